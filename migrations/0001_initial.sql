-- otad schema, version 1.
-- Conventions: times are INTEGER seconds since the Unix epoch (UTC); hashes are
-- lower-case hex; booleans are INTEGER 0/1; optional text that is part of a
-- UNIQUE key is '' rather than NULL (NULLs never collide in UNIQUE).
-- This file is embedded into the binary by CMake: keep it free of the characters
-- at-sign, dollar-brace and backslash, which the embedding step would interpret.

-- Operator API tokens. Only the SHA-256 of the secret is stored: the secret is
-- 32 random bytes, so a fast hash is enough and lets us look tokens up by hash.
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'uploader', 'viewer')),
    token_hash   TEXT    NOT NULL UNIQUE
                         CHECK (length(token_hash) = 64 AND token_hash NOT GLOB '*[^0-9a-f]*'),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
-- A name identifies one active token; a revoked token's name may be reused.
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE products (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    name                   TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    allow_project_mismatch INTEGER NOT NULL DEFAULT 0 CHECK (allow_project_mismatch IN (0, 1)),
    -- The ESP-IDF project name of the first image uploaded for this product;
    -- later uploads must match unless allow_project_mismatch.
    project_name           TEXT    CHECK (project_name IS NULL OR length(project_name) BETWEEN 1 AND 64),
    created_at             INTEGER NOT NULL
);

CREATE TABLE releases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    version    TEXT    NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    notes      TEXT    NOT NULL DEFAULT '' CHECK (length(notes) <= 65536),
    created_at INTEGER NOT NULL,
    -- Set once a device was offered this release: from then on its artifacts and
    -- version are frozen (a device may be downloading them), see the triggers below.
    offered    INTEGER NOT NULL DEFAULT 0 CHECK (offered IN (0, 1)),
    UNIQUE (product_id, version)
);
CREATE INDEX releases_newest ON releases (product_id, created_at DESC, id DESC);

-- Content-addressed bytes under <data_dir>/blobs/ab/cd/<sha256>. A row exists
-- only once its file is durable; a file may briefly exist without a row.
CREATE TABLE blobs (
    sha256     TEXT    PRIMARY KEY CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One image of a release for one (chip, layout, slot). Deleting a release deletes
-- its artifacts; their blobs become orphans that start-up collection removes.
CREATE TABLE artifacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    chip       TEXT    NOT NULL CHECK (length(chip) BETWEEN 1 AND 32),
    layout     TEXT    NOT NULL DEFAULT '' CHECK (length(layout) <= 32),
    slot       TEXT    NOT NULL DEFAULT '' CHECK (length(slot) <= 32),
    filename   TEXT    NOT NULL CHECK (length(filename) BETWEEN 1 AND 255 AND instr(filename, '/') = 0),
    sha256     TEXT    NOT NULL REFERENCES blobs (sha256) ON DELETE RESTRICT,
    md5        TEXT    NOT NULL CHECK (length(md5) = 32 AND md5 NOT GLOB '*[^0-9a-f]*'),
    size       INTEGER NOT NULL CHECK (size >= 0),
    metadata   TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at INTEGER NOT NULL,
    UNIQUE (release_id, chip, layout, slot)
);
CREATE INDEX artifacts_by_blob ON artifacts (sha256);

-- A named pointer (stable, beta...) of a product to one of its releases. A release
-- a channel points at cannot be deleted.
CREATE TABLE channels (
    product_id     INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    release_id     INTEGER NOT NULL REFERENCES releases (id) ON DELETE RESTRICT,
    allow_rollback INTEGER NOT NULL DEFAULT 0 CHECK (allow_rollback IN (0, 1)),
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (product_id, name)
) WITHOUT ROWID;
CREATE INDEX channels_by_release ON channels (release_id);

-- Append-only record of operator actions.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    action  TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    subject TEXT    NOT NULL DEFAULT '',
    detail  TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX audit_by_subject ON audit (subject, id);

-- Last known state of each device, updated from polls (batched) and reports.
CREATE TABLE devices (
    id                  TEXT    PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    product_id          INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    chip                TEXT    NOT NULL DEFAULT '',
    layout              TEXT    NOT NULL DEFAULT '',
    slot                TEXT    NOT NULL DEFAULT '',
    version             TEXT    NOT NULL DEFAULT '',
    channel             TEXT    NOT NULL DEFAULT '',
    secure_version      INTEGER,
    remote_address      TEXT    NOT NULL DEFAULT '',
    first_seen          INTEGER NOT NULL,
    last_seen           INTEGER NOT NULL,
    offered_version     TEXT,
    offered_at          INTEGER,
    last_status         TEXT    CHECK (last_status IS NULL OR length(last_status) BETWEEN 1 AND 64),
    last_status_at      INTEGER,
    last_status_version TEXT
) WITHOUT ROWID;
CREATE INDEX devices_by_product ON devices (product_id, id);
CREATE INDEX devices_by_version ON devices (product_id, version);
CREATE INDEX devices_by_status ON devices (product_id, last_status);
CREATE INDEX devices_by_last_seen ON devices (last_seen);

CREATE TABLE device_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('first_seen', 'poll_offer', 'download', 'report',
                                               'version_changed', 'rolled_back')),
    version   TEXT,
    status    TEXT,
    detail    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX device_events_by_device ON device_events (device_id, id);
CREATE INDEX device_events_by_time ON device_events (at);

-- Per-product shared secrets devices present (e.g. NONOS "Authorization: token").
CREATE TABLE device_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    key_hash   TEXT    NOT NULL UNIQUE
                       CHECK (length(key_hash) = 64 AND key_hash NOT GLOB '*[^0-9a-f]*'),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX device_keys_active_name ON device_keys (product_id, name) WHERE revoked_at IS NULL;
CREATE INDEX device_keys_by_product ON device_keys (product_id);

-- Manifest signing keys. Private keys live here, so the database file is 0600.
CREATE TABLE signing_keys (
    key_id          TEXT    PRIMARY KEY CHECK (length(key_id) BETWEEN 1 AND 64),
    algorithm       TEXT    NOT NULL CHECK (algorithm IN ('es256', 'ed25519')),
    private_key_pem TEXT    NOT NULL,
    public_key_pem  TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER
) WITHOUT ROWID;
-- At most one active key per algorithm; retired keys stay for verification.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (algorithm) WHERE retired_at IS NULL;

-- Server secrets and small state, e.g. the URL-signing HMAC key.
CREATE TABLE settings (
    key        TEXT    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 128),
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Rules the schema enforces itself, so no code path can break them.

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TRIGGER releases_offered_sticky BEFORE UPDATE OF offered ON releases
WHEN OLD.offered = 1 AND NEW.offered = 0
BEGIN
    SELECT RAISE(ABORT, 'release was offered to devices; it cannot be un-offered');
END;
CREATE TRIGGER releases_version_frozen BEFORE UPDATE OF version ON releases
WHEN OLD.offered = 1 AND NEW.version <> OLD.version
BEGIN
    SELECT RAISE(ABORT, 'release was offered to devices; its version is frozen');
END;
CREATE TRIGGER releases_product_fixed BEFORE UPDATE OF product_id ON releases
WHEN NEW.product_id <> OLD.product_id
BEGIN
    SELECT RAISE(ABORT, 'a release cannot move to another product');
END;

-- Artifacts of an offered release are frozen. Deleting the whole release still
-- works: its cascade runs after the release row is gone, so the lookup is NULL.
CREATE TRIGGER artifacts_insert_frozen BEFORE INSERT ON artifacts
WHEN (SELECT offered FROM releases WHERE id = NEW.release_id) = 1
BEGIN
    SELECT RAISE(ABORT, 'release was offered to devices; its artifacts are frozen');
END;
CREATE TRIGGER artifacts_update_frozen BEFORE UPDATE ON artifacts
WHEN (SELECT offered FROM releases WHERE id = OLD.release_id) = 1
BEGIN
    SELECT RAISE(ABORT, 'release was offered to devices; its artifacts are frozen');
END;
CREATE TRIGGER artifacts_delete_frozen BEFORE DELETE ON artifacts
WHEN (SELECT offered FROM releases WHERE id = OLD.release_id) = 1
BEGIN
    SELECT RAISE(ABORT, 'release was offered to devices; its artifacts are frozen');
END;
CREATE TRIGGER artifacts_size_matches_blob BEFORE INSERT ON artifacts
WHEN NEW.size <> (SELECT size FROM blobs WHERE sha256 = NEW.sha256)
BEGIN
    SELECT RAISE(ABORT, 'artifact size differs from the size of its blob');
END;

CREATE TRIGGER channels_release_same_product_insert BEFORE INSERT ON channels
WHEN (SELECT product_id FROM releases WHERE id = NEW.release_id) <> NEW.product_id
BEGIN
    SELECT RAISE(ABORT, 'channel points at a release of another product');
END;
CREATE TRIGGER channels_release_same_product_update BEFORE UPDATE OF release_id, product_id ON channels
WHEN (SELECT product_id FROM releases WHERE id = NEW.release_id) <> NEW.product_id
BEGIN
    SELECT RAISE(ABORT, 'channel points at a release of another product');
END;
