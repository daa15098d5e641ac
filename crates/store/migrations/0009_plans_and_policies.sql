-- Saved ring plans, release policies and the rollouts they drafted (issue 18).
CREATE TABLE ring_plans (
    name TEXT PRIMARY KEY NOT NULL,
    weekends TEXT NOT NULL,                -- engine::Weekends
    after_hours_start TEXT,                -- HH:MM:SS, with after_hours_end; NULL: any hour
    after_hours_end TEXT,
    gate_min_updated_percent REAL NOT NULL,
    gate_max_failed_percent REAL NOT NULL,
    gate_max_failures_per_hour INTEGER
);

CREATE TABLE ring_plan_rings (
    plan TEXT NOT NULL REFERENCES ring_plans(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    membership TEXT NOT NULL,              -- devices | filter | share | rest
    share_percent INTEGER,                 -- share
    filter_platform TEXT,                  -- filter: every field set must match
    filter_model TEXT,
    filter_os TEXT,
    filter_name TEXT,
    filter_serial TEXT,
    offset_days INTEGER NOT NULL,
    time_of_day TEXT NOT NULL,             -- HH:MM:SS on each device's clock
    PRIMARY KEY (plan, position)
);

CREATE TABLE ring_plan_devices (           -- devices: the ring's devices, by hand
    plan TEXT NOT NULL,
    position INTEGER NOT NULL,
    enrollment_id TEXT NOT NULL,
    PRIMARY KEY (plan, position, enrollment_id),
    FOREIGN KEY (plan, position) REFERENCES ring_plan_rings(plan, position) ON DELETE CASCADE
);

CREATE TABLE release_policies (
    platform TEXT PRIMARY KEY NOT NULL,
    plan TEXT NOT NULL REFERENCES ring_plans(name),
    base_delay_days INTEGER NOT NULL,
    action TEXT NOT NULL,                  -- engine::PolicyAction
    exploited_percent INTEGER,             -- NULL: no shortening
    since TEXT NOT NULL                    -- YYYY-MM-DD
);

-- One row per release a policy acted on, so that it acts once: drafted, started or dismissed.
CREATE TABLE drafts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    platform TEXT NOT NULL,
    product_version TEXT NOT NULL,
    product_version_extra TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL,
    base_date TEXT NOT NULL,               -- YYYY-MM-DD
    shortened_to INTEGER,
    exploited TEXT NOT NULL DEFAULT '',    -- the actively exploited CVEs, comma-separated
    state TEXT NOT NULL,                   -- engine::DraftState
    created_at TEXT NOT NULL,
    UNIQUE (platform, product_version, product_version_extra)
);
