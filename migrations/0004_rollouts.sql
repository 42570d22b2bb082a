-- otad schema, version 4: staged rollouts with a health gate, device tags and
-- per-device overrides (docs/rollouts.md).
-- Conventions as in 0001: times are INTEGER unix seconds, booleans INTEGER 0/1.
-- This file is embedded into the binary by CMake: keep it free of the characters
-- at-sign, dollar-brace and backslash, which the embedding step would interpret.

-- A rollout moves one channel of one product from its base release to a target
-- release in stages. The release ids are kept while the rollout is active (see
-- the trigger below); the versions stay for history once a release is deleted.
CREATE TABLE rollouts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id         INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    channel            TEXT    NOT NULL CHECK (length(channel) BETWEEN 1 AND 64),
    base_release_id    INTEGER REFERENCES releases (id) ON DELETE SET NULL,
    target_release_id  INTEGER REFERENCES releases (id) ON DELETE SET NULL,
    base_version       TEXT    NOT NULL CHECK (length(base_version) BETWEEN 1 AND 64),
    target_version     TEXT    NOT NULL CHECK (length(target_version) BETWEEN 1 AND 64),
    state              TEXT    NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'aborted')),
    -- Index into rollout_stages of the stage now offered; never moves backwards.
    current_stage      INTEGER NOT NULL DEFAULT 0 CHECK (current_stage >= 0),
    -- When the current stage began, shifted forward by the time spent paused, so
    -- hold_s counts running time only.
    stage_started_at   INTEGER NOT NULL,
    paused_at          INTEGER,
    pause_reason       TEXT    NOT NULL DEFAULT '' CHECK (pause_reason IN ('', 'operator', 'gate')),
    pause_detail       TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(pause_detail)),
    -- Aborted with revert: devices that took the target are offered the base again.
    revert             INTEGER NOT NULL DEFAULT 0 CHECK (revert IN (0, 1)),
    filter             TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(filter)),
    max_failure_ratio  REAL    NOT NULL CHECK (max_failure_ratio BETWEEN 0 AND 1),
    max_rollback_ratio REAL    NOT NULL CHECK (max_rollback_ratio BETWEEN 0 AND 1),
    min_devices        INTEGER NOT NULL CHECK (min_devices >= 0),
    stale_after_s      INTEGER NOT NULL CHECK (stale_after_s >= 1),
    -- A forced resume judges the gate on what happens after it: the totals at
    -- that moment are subtracted from the counters.
    gate_base_offered     INTEGER NOT NULL DEFAULT 0,
    gate_base_failed      INTEGER NOT NULL DEFAULT 0,
    gate_base_rolled_back INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    created_by         TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 128),
    updated_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    CHECK ((state IN ('completed', 'aborted')) = (finished_at IS NOT NULL)),
    CHECK ((state = 'paused') = (paused_at IS NOT NULL))
);
-- One active rollout per channel; the schema enforces it too.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (product_id, channel) WHERE state IN ('running', 'paused');
CREATE INDEX rollouts_by_product ON rollouts (product_id, id);

-- The stages of a rollout, with counters kept as device events arrive, so a
-- status answer reads a handful of rows whatever the fleet size. Counters count
-- rollout_devices rows by the stage their bucket falls in:
--   eligible  every row (devices seen polling inside the cohort and filter)
--   offered   rows with offered_at set (offered the target at least once)
--   downloading .. silent: rows in that state now.
CREATE TABLE rollout_stages (
    rollout_id  INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    -- Cumulative share of the fleet in basis points (1 % = 100), 1..10000.
    percent_bp  INTEGER NOT NULL CHECK (percent_bp BETWEEN 1 AND 10000),
    hold_s      INTEGER CHECK (hold_s IS NULL OR hold_s >= 0),
    started_at  INTEGER,
    eligible    INTEGER NOT NULL DEFAULT 0 CHECK (eligible >= 0),
    offered     INTEGER NOT NULL DEFAULT 0 CHECK (offered >= 0),
    downloading INTEGER NOT NULL DEFAULT 0 CHECK (downloading >= 0),
    installed   INTEGER NOT NULL DEFAULT 0 CHECK (installed >= 0),
    failed      INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    rolled_back INTEGER NOT NULL DEFAULT 0 CHECK (rolled_back >= 0),
    silent      INTEGER NOT NULL DEFAULT 0 CHECK (silent >= 0),
    PRIMARY KEY (rollout_id, idx)
) WITHOUT ROWID;

-- One row per device the rollout has seen inside its cohort, or offered the
-- target. Written in the same transaction as the counter change it causes.
CREATE TABLE rollout_devices (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    device_id  TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    stage      INTEGER NOT NULL CHECK (stage >= 0),
    state      TEXT    NOT NULL CHECK (state IN ('eligible', 'offered', 'downloading', 'installed', 'failed',
                                                 'rolled_back', 'silent')),
    offered_at INTEGER,
    updated_at INTEGER NOT NULL,
    CHECK (state = 'eligible' OR offered_at IS NOT NULL),
    PRIMARY KEY (rollout_id, device_id)
) WITHOUT ROWID;
-- The silence sweep reads only devices still waiting or downloading.
CREATE INDEX rollout_devices_in_progress ON rollout_devices (rollout_id, state, updated_at);
CREATE INDEX rollout_devices_by_device ON rollout_devices (device_id);

-- Operator labels on devices, used by rollout filters.
CREATE TABLE device_tags (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag       TEXT NOT NULL CHECK (length(tag) BETWEEN 1 AND 64),
    PRIMARY KEY (device_id, tag)
) WITHOUT ROWID;
CREATE INDEX device_tags_by_tag ON device_tags (tag, device_id);

-- Per-device overrides: a pin to one release (wins over rollouts and channels),
-- or an exclusion from rollouts (the device keeps its channel's release).
CREATE TABLE device_overrides (
    device_id  TEXT    PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    kind       TEXT    NOT NULL CHECK (kind IN ('pin', 'exclude')),
    release_id INTEGER REFERENCES releases (id) ON DELETE RESTRICT,
    reason     TEXT    NOT NULL DEFAULT '' CHECK (length(reason) <= 256),
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 128),
    CHECK ((kind = 'pin') = (release_id IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX device_overrides_by_product ON device_overrides (product_id);
CREATE INDEX device_overrides_by_release ON device_overrides (release_id);

-- A release an active rollout starts from or moves to cannot be deleted.
CREATE TRIGGER releases_in_active_rollout BEFORE DELETE ON releases
WHEN EXISTS (SELECT 1 FROM rollouts WHERE state IN ('running', 'paused')
             AND (base_release_id = OLD.id OR target_release_id = OLD.id))
BEGIN
    SELECT RAISE(ABORT, 'release is part of an active rollout');
END;

CREATE TRIGGER rollouts_stage_forward BEFORE UPDATE OF current_stage ON rollouts
WHEN NEW.current_stage < OLD.current_stage
BEGIN
    SELECT RAISE(ABORT, 'a rollout stage never moves backwards');
END;
CREATE TRIGGER rollouts_finished_final BEFORE UPDATE OF state ON rollouts
WHEN OLD.state IN ('completed', 'aborted') AND NEW.state <> OLD.state
BEGIN
    SELECT RAISE(ABORT, 'a finished rollout stays finished');
END;
