-- otad schema, version 2: tombstones of offered releases.
-- A device that was offered version V of a product may hold V's bytes, or be
-- halfway through downloading them. An offered release's artifacts are frozen
-- (0001), but an admin may still delete the whole release once no channel points
-- at it; without a record the same version could then be uploaded again with
-- other bytes, and a device would be offered two different "V". So deleting an
-- offered release leaves its artifacts' keys and digests here, and an upload of
-- that version is accepted only with exactly those bytes (the catalogue checks).
-- Same embedding rules as 0001: no at-sign, dollar-brace or backslash.

CREATE TABLE release_tombstones (
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    version    TEXT    NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    chip       TEXT    NOT NULL CHECK (length(chip) BETWEEN 1 AND 32),
    layout     TEXT    NOT NULL DEFAULT '' CHECK (length(layout) <= 32),
    slot       TEXT    NOT NULL DEFAULT '' CHECK (length(slot) <= 32),
    sha256     TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    size       INTEGER NOT NULL CHECK (size >= 0),
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (product_id, version, chip, layout, slot)
) WITHOUT ROWID;

-- Written by the schema itself, so no code path that deletes an offered release
-- can skip it. BEFORE DELETE: the artifacts are still there (their cascade runs
-- with the release row's deletion). The first tombstone of a key is kept; a
-- version that came back could only come back with the same bytes anyway.
CREATE TRIGGER releases_offered_leave_tombstone BEFORE DELETE ON releases
WHEN OLD.offered = 1
BEGIN
    INSERT OR IGNORE INTO release_tombstones (product_id, version, chip, layout, slot, sha256, size, deleted_at)
    SELECT OLD.product_id, OLD.version, chip, layout, slot, sha256, size, CAST(strftime('%s', 'now') AS INTEGER)
    FROM artifacts WHERE release_id = OLD.id;
END;

-- Tombstones are history: like the audit log they are never changed or removed.
CREATE TRIGGER release_tombstones_no_update BEFORE UPDATE ON release_tombstones
BEGIN
    SELECT RAISE(ABORT, 'release tombstones are permanent');
END;
CREATE TRIGGER release_tombstones_no_delete BEFORE DELETE ON release_tombstones
BEGIN
    SELECT RAISE(ABORT, 'release tombstones are permanent');
END;
