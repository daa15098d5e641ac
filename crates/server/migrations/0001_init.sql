-- The DDM server's own database. Device-facing writes and the admin API share it.

CREATE TABLE enrollments (
    id TEXT PRIMARY KEY NOT NULL,          -- UDID, or EnrollmentID, plus ":<user>" on a user channel
    udid TEXT,
    topic TEXT,
    push_token BLOB,
    push_magic TEXT,
    serial_number TEXT,
    product_name TEXT,
    model TEXT,
    model_name TEXT,
    device_name TEXT,
    os_version TEXT,
    build_version TEXT,
    enrolled_at TEXT,
    token_updated_at TEXT,
    checked_out_at TEXT,
    last_seen_at TEXT,
    bootstrap_token BLOB,                  -- AES-256-GCM: nonce (12) || ciphertext
    bootstrap_token_escrowed_at TEXT,
    bootstrap_token_requested_at TEXT,
    seq INTEGER NOT NULL DEFAULT 0         -- change cursor for the bulk "changes since" call
);
CREATE INDEX enrollments_by_seq ON enrollments(seq);

CREATE TABLE counters (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('seq', 0);

CREATE TABLE declarations (
    identifier TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,                 -- JSON object
    server_token TEXT NOT NULL,
    touched INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE set_declarations (
    set_name TEXT NOT NULL,
    identifier TEXT NOT NULL REFERENCES declarations(identifier) ON DELETE CASCADE,
    PRIMARY KEY (set_name, identifier)
);
CREATE INDEX set_declarations_by_declaration ON set_declarations(identifier);

CREATE TABLE enrollment_sets (
    enrollment_id TEXT NOT NULL,
    set_name TEXT NOT NULL,
    PRIMARY KEY (enrollment_id, set_name)
);
CREATE INDEX enrollment_sets_by_set ON enrollment_sets(set_name);

-- The merged status of each enrollment, as one full report.
CREATE TABLE status (
    enrollment_id TEXT PRIMARY KEY NOT NULL,
    report TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Every report as received.
CREATE TABLE status_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enrollment_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX status_reports_by_enrollment ON status_reports(enrollment_id, id);

-- MDM commands waiting for the device (only DeclarativeManagement is ever queued).
CREATE TABLE commands (
    uuid TEXT PRIMARY KEY NOT NULL,
    enrollment_id TEXT NOT NULL,
    body BLOB NOT NULL,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    result TEXT
);
CREATE INDEX commands_pending ON commands(enrollment_id, result);
