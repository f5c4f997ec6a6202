-- The property catalogue: listings, their amenities (one row each, for "has all of" filters),
-- and full-text indexes over title/description/location (words) and location (trigrams, for
-- case-insensitive substring search).
CREATE TABLE properties (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
    title         TEXT    NOT NULL,
    description   TEXT,
    price_cents   INTEGER NOT NULL CHECK (price_cents > 0),
    location      TEXT    NOT NULL,
    city          TEXT,
    state         TEXT,
    zip           TEXT,
    latitude      REAL,
    longitude     REAL,
    bedrooms      INTEGER NOT NULL,
    bathrooms     REAL    NOT NULL,
    size_sqft     INTEGER NOT NULL,
    lot_size_sqft INTEGER,
    year_built    INTEGER,
    amenities     TEXT    NOT NULL DEFAULT '[]',  -- JSON array, as returned
    image_urls    TEXT    NOT NULL DEFAULT '[]',  -- JSON array
    school_rating REAL,
    commute_time  INTEGER,
    property_type TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    features      TEXT,                           -- JSON object from the source row
    source        TEXT,
    external_id   TEXT,
    owner_id      INTEGER,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,               -- unix microseconds
    updated_at    INTEGER NOT NULL
);

CREATE UNIQUE INDEX properties_source_external ON properties (source, external_id)
    WHERE source IS NOT NULL AND external_id IS NOT NULL;
-- sort keys, each with id as the tie-breaker used by keyset pagination
CREATE INDEX properties_created   ON properties (created_at, id);
CREATE INDEX properties_price     ON properties (price_cents, id);
CREATE INDEX properties_size      ON properties (size_sqft, id);
CREATE INDEX properties_bedrooms  ON properties (bedrooms, id);
CREATE INDEX properties_year_asc  ON properties (coalesce(year_built, 99999), id);
CREATE INDEX properties_year_desc ON properties (coalesce(year_built, -1), id);
-- filters
CREATE INDEX properties_city      ON properties (city COLLATE NOCASE);
CREATE INDEX properties_type      ON properties (property_type);
CREATE INDEX properties_status    ON properties (status);
CREATE INDEX properties_bathrooms ON properties (bathrooms);
CREATE INDEX properties_commute   ON properties (commute_time);
CREATE INDEX properties_school    ON properties (school_rating);
CREATE INDEX properties_owner     ON properties (owner_id);

CREATE TABLE property_amenities (
    amenity     TEXT    NOT NULL,
    property_id INTEGER NOT NULL REFERENCES properties (id) ON DELETE CASCADE,
    PRIMARY KEY (amenity, property_id)
) WITHOUT ROWID;
CREATE INDEX property_amenities_property ON property_amenities (property_id);

CREATE VIRTUAL TABLE properties_fts USING fts5 (
    title, description, location,
    content = 'properties', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE properties_location_trgm USING fts5 (
    location, content = 'properties', content_rowid = 'id', tokenize = 'trigram');

CREATE TRIGGER properties_fts_insert AFTER INSERT ON properties BEGIN
    INSERT INTO properties_fts (rowid, title, description, location)
        VALUES (new.id, new.title, new.description, new.location);
    INSERT INTO properties_location_trgm (rowid, location) VALUES (new.id, new.location);
END;
CREATE TRIGGER properties_fts_delete AFTER DELETE ON properties BEGIN
    INSERT INTO properties_fts (properties_fts, rowid, title, description, location)
        VALUES ('delete', old.id, old.title, old.description, old.location);
    INSERT INTO properties_location_trgm (properties_location_trgm, rowid, location)
        VALUES ('delete', old.id, old.location);
END;
CREATE TRIGGER properties_fts_update AFTER UPDATE OF title, description, location ON properties BEGIN
    INSERT INTO properties_fts (properties_fts, rowid, title, description, location)
        VALUES ('delete', old.id, old.title, old.description, old.location);
    INSERT INTO properties_fts (rowid, title, description, location)
        VALUES (new.id, new.title, new.description, new.location);
    INSERT INTO properties_location_trgm (properties_location_trgm, rowid, location)
        VALUES ('delete', old.id, old.location);
    INSERT INTO properties_location_trgm (rowid, location) VALUES (new.id, new.location);
END;
