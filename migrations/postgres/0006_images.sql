-- Listing photos (the same tables as on SQLite, migrations/sqlite/0006). An image belongs to a
-- listing; its original is stored once per content (objects: key originals/SHA-256.EXT, counted
-- in object_refs, deleted when nothing refers to it), its variants under images/ID/. `status`:
-- queued (uploaded, its processing job waiting), ready, failed (`error` says why). The features
-- are those of src/domain/imageproc.h: `phash` the 64-bit hash as a signed integer, `embedding`
-- IMAGEPROC_DIM little-endian float32s in hex, `colors` and `labels` JSON arrays. Times are unix
-- microseconds.
CREATE TABLE images (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    property_id   BIGINT  NOT NULL REFERENCES properties (id) ON DELETE CASCADE,
    status        TEXT    NOT NULL CHECK (status IN ('queued', 'ready', 'failed')),
    error         TEXT,
    filename      TEXT,
    content_type  TEXT    NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT    NOT NULL,
    original_key  TEXT    NOT NULL,
    public_key    TEXT,
    medium_key    TEXT,
    thumb_key     TEXT,
    width         INTEGER,
    height        INTEGER,
    phash         BIGINT,
    embedding     TEXT,
    colors        TEXT,
    labels        TEXT,
    brightness    DOUBLE PRECISION,
    sharpness     DOUBLE PRECISION,
    too_dark      INTEGER,
    blurry        INTEGER,
    job_id        BIGINT,
    created_by    BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    processed_at  BIGINT
);
CREATE INDEX images_property ON images (property_id, id);
CREATE INDEX images_processed ON images (processed_at, id) WHERE processed_at IS NOT NULL;

-- Near-duplicate pairs, both ways (image_id, duplicate_id) and (duplicate_id, image_id).
CREATE TABLE image_duplicates (
    image_id     BIGINT  NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    duplicate_id BIGINT  NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    distance     INTEGER NOT NULL,   -- bits between the perceptual hashes
    similarity   DOUBLE PRECISION    NOT NULL,   -- cosine of the embeddings
    PRIMARY KEY (image_id, duplicate_id)
);
CREATE INDEX image_duplicates_dup ON image_duplicates (duplicate_id);

-- How many images refer to a stored original; its bytes go when the count reaches 0.
CREATE TABLE object_refs (
    key        TEXT    PRIMARY KEY,
    refs       BIGINT  NOT NULL CHECK (refs >= 0),
    size_bytes BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);

-- An image row that goes (deleted, or with its listing) gives up its original's count, unless it
-- already did (status failed: the processing job released it). In the transaction of the delete,
-- whatever deleted it, so the count cannot drift.
CREATE FUNCTION images_release_original() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE object_refs SET refs = refs - 1 WHERE key = OLD.original_key AND refs > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER images_release_original AFTER DELETE ON images FOR EACH ROW WHEN (OLD.status <> 'failed')
    EXECUTE FUNCTION images_release_original();
