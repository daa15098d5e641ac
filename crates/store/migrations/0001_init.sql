-- The console's local cache. Desired state lives here; pushes, assignments and alerts are derived
-- from it through the outbox, written in the same transaction as the state that implies them.

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE releases (
    platform TEXT NOT NULL,
    product_version TEXT NOT NULL,
    product_version_extra TEXT NOT NULL DEFAULT '',
    build TEXT NOT NULL DEFAULT '',
    prerequisite_build TEXT,
    posting_date TEXT NOT NULL,
    expiration_date TEXT,
    supported_devices TEXT NOT NULL,       -- JSON array
    PRIMARY KEY (platform, product_version, product_version_extra, build)
);

CREATE TABLE devices (
    enrollment_id TEXT PRIMARY KEY NOT NULL,
    facts TEXT NOT NULL,                   -- JSON DeviceFacts
    name TEXT,
    time_zone TEXT,
    utc_offset_minutes INTEGER,
    last_report_at TEXT,
    bootstrap_token_escrowed INTEGER NOT NULL DEFAULT 0,
    bootstrap_token_requested_at TEXT,
    server_seq INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release TEXT NOT NULL,                 -- JSON Release
    wave INTEGER NOT NULL DEFAULT 1,
    deadline_local TEXT NOT NULL,
    details_url TEXT,
    state TEXT NOT NULL,                   -- active | paused | cancelled | done
    created_at TEXT NOT NULL
);

CREATE TABLE enforcements (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    enrollment_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    record TEXT NOT NULL,                  -- JSON Enforcement
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rollout_id, enrollment_id)
);
CREATE INDEX enforcements_by_phase ON enforcements(rollout_id, phase);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enrollment_id TEXT NOT NULL,
    rollout_id INTEGER,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_by_device ON events(enrollment_id, id);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    enrollment_id TEXT,
    rollout_id INTEGER,
    detail TEXT NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id INTEGER,
    enrollment_id TEXT NOT NULL,
    effect TEXT NOT NULL,                  -- JSON Effect
    created_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX outbox_pending ON outbox(done_at, id);
