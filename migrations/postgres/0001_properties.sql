-- The property catalogue on PostgreSQL: the same tables and columns as the SQLite schema
-- (times as unix microseconds, money as integer cents, lists as JSON text) so that both backends
-- read and write rows with the same code. Full text: a generated tsvector with a GIN index;
-- location substrings: pg_trgm's GIN index, which serves ILIKE '%...%'.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE properties (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused
    title         TEXT    NOT NULL,
    description   TEXT,
    price_cents   BIGINT  NOT NULL CHECK (price_cents > 0),
    location      TEXT    NOT NULL,
    city          TEXT,
    state         TEXT,
    zip           TEXT,
    latitude      DOUBLE PRECISION,
    longitude     DOUBLE PRECISION,
    bedrooms      INTEGER NOT NULL,
    bathrooms     DOUBLE PRECISION NOT NULL,
    size_sqft     INTEGER NOT NULL,
    lot_size_sqft INTEGER,
    year_built    INTEGER,
    amenities     TEXT    NOT NULL DEFAULT '[]',  -- JSON array, as returned
    image_urls    TEXT    NOT NULL DEFAULT '[]',  -- JSON array
    school_rating DOUBLE PRECISION,
    commute_time  INTEGER,
    property_type TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    features      TEXT,                           -- JSON object from the source row
    source        TEXT,
    external_id   TEXT,
    owner_id      BIGINT,
    version       BIGINT  NOT NULL DEFAULT 1,
    created_at    BIGINT  NOT NULL,               -- unix microseconds
    updated_at    BIGINT  NOT NULL,
    search        TSVECTOR GENERATED ALWAYS AS (
                      to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, '') || ' ' || location)
                  ) STORED
);

CREATE UNIQUE INDEX properties_source_external ON properties (source, external_id)
    WHERE source IS NOT NULL AND external_id IS NOT NULL;
-- sort keys, each with id as the tie-breaker used by keyset pagination
CREATE INDEX properties_created   ON properties (created_at, id);
CREATE INDEX properties_price     ON properties (price_cents, id);
CREATE INDEX properties_size      ON properties (size_sqft, id);
CREATE INDEX properties_bedrooms  ON properties (bedrooms, id);
CREATE INDEX properties_year_asc  ON properties ((coalesce(year_built, 99999)), id);
CREATE INDEX properties_year_desc ON properties ((coalesce(year_built, -1)), id);
-- filters; city leads composite indexes with the common sort keys
CREATE INDEX properties_city_price   ON properties ((lower(city)), price_cents, id);
CREATE INDEX properties_city_created ON properties ((lower(city)), created_at, id);
CREATE INDEX properties_city_size    ON properties ((lower(city)), size_sqft, id);
CREATE INDEX properties_type      ON properties (property_type);
CREATE INDEX properties_status    ON properties (status);
CREATE INDEX properties_bathrooms ON properties (bathrooms);
CREATE INDEX properties_commute   ON properties (commute_time);
CREATE INDEX properties_school    ON properties (school_rating);
CREATE INDEX properties_owner     ON properties (owner_id);
CREATE INDEX properties_search    ON properties USING GIN (search);
CREATE INDEX properties_location_trgm ON properties USING GIN (location gin_trgm_ops);

CREATE TABLE property_amenities (
    amenity     TEXT   NOT NULL,
    property_id BIGINT NOT NULL REFERENCES properties (id) ON DELETE CASCADE,
    PRIMARY KEY (amenity, property_id)
);
CREATE INDEX property_amenities_property ON property_amenities (property_id);
