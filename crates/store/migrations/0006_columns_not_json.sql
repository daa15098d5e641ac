-- Rows the store owns: every field a column, so the engine's types carry no storage concerns and
-- a field added later is a migration here, not a serde default. The JSON columns written before
-- are read into the new columns once, then dropped.

-- An enforcement record.
ALTER TABLE enforcements ADD COLUMN target_version TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcements ADD COLUMN target_extra TEXT;
ALTER TABLE enforcements ADD COLUMN target_build TEXT;
ALTER TABLE enforcements ADD COLUMN declaration_id TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcements ADD COLUMN set_name TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcements ADD COLUMN deadline_local TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcements ADD COLUMN utc_offset_minutes INTEGER;
ALTER TABLE enforcements ADD COLUMN exclusion_reason TEXT;
ALTER TABLE enforcements ADD COLUMN failure_reason TEXT;
ALTER TABLE enforcements ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enforcements ADD COLUMN invalid_reason TEXT;
ALTER TABLE enforcements ADD COLUMN install_state TEXT;
ALTER TABLE enforcements ADD COLUMN last_report_at TEXT;
ALTER TABLE enforcements ADD COLUMN started_at TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcements ADD COLUMN bootstrap_requested_at TEXT;
ALTER TABLE enforcements ADD COLUMN reported_os TEXT;
ALTER TABLE enforcements ADD COLUMN past_deadline INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enforcements ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enforcements ADD COLUMN phase_since TEXT;
ALTER TABLE enforcements ADD COLUMN stuck INTEGER NOT NULL DEFAULT 0;
UPDATE enforcements SET
    target_version = json_extract(record, '$.target_version'),
    target_extra = json_extract(record, '$.target_extra'),
    target_build = json_extract(record, '$.target_build'),
    declaration_id = json_extract(record, '$.declaration_id'),
    set_name = json_extract(record, '$.set_name'),
    deadline_local = json_extract(record, '$.deadline'),
    utc_offset_minutes = json_extract(record, '$.utc_offset_minutes'),
    exclusion_reason = json_extract(record, '$.exclusion_reason'),
    failure_reason = json_extract(record, '$.failure_reason'),
    failure_count = json_extract(record, '$.failure_count'),
    invalid_reason = json_extract(record, '$.invalid_reason'),
    install_state = json_extract(record, '$.install_state'),
    last_report_at = json_extract(record, '$.last_report_at'),
    started_at = json_extract(record, '$.started_at'),
    bootstrap_requested_at = json_extract(record, '$.bootstrap_requested_at'),
    reported_os = json_extract(record, '$.reported_os'),
    past_deadline = json_extract(record, '$.past_deadline'),
    stale = json_extract(record, '$.stale'),
    -- Records written before phase_since existed read as their start.
    phase_since = json_extract(record, '$.phase_since'),
    stuck = COALESCE(json_extract(record, '$.stuck'), 0);
ALTER TABLE enforcements DROP COLUMN record;
-- tick_due counts nanoseconds now, so a record reads back exactly as the engine wrote it.
UPDATE enforcements SET tick_due = tick_due * 1000000000 WHERE tick_due IS NOT NULL;

-- A device's facts, beside the columns 0003 already lists.
ALTER TABLE devices ADD COLUMN enrolled_at TEXT;
ALTER TABLE devices ADD COLUMN reported_device_id TEXT;
ALTER TABLE devices ADD COLUMN supported_configurations TEXT;  -- JSON array; NULL until reported
UPDATE devices SET
    enrolled_at = json_extract(facts, '$.enrolled_at'),
    reported_device_id = json_extract(facts, '$.reported_device_id'),
    supported_configurations = json(json_extract(facts, '$.supported_configurations'));
ALTER TABLE devices DROP COLUMN facts;

-- A rollout's release: its version here, its builds in a table of their own.
ALTER TABLE rollouts ADD COLUMN platform TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN product_version TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN product_version_extra TEXT;
CREATE TABLE rollout_builds (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    position INTEGER NOT NULL,             -- build order
    build TEXT,
    prerequisite_build TEXT,
    supported_devices TEXT NOT NULL,       -- JSON array of lower-cased ids
    PRIMARY KEY (rollout_id, position)
);
UPDATE rollouts SET
    platform = json_extract(release, '$.platform'),
    product_version = json_extract(release, '$.product_version'),
    product_version_extra = json_extract(release, '$.product_version_extra');
INSERT INTO rollout_builds (rollout_id, position, build, prerequisite_build, supported_devices)
SELECT r.id, b.key, json_extract(b.value, '$.build'), json_extract(b.value, '$.prerequisite_build'),
       json(json_extract(b.value, '$.supported_devices'))
  FROM rollouts r, json_each(r.release, '$.builds') b;
ALTER TABLE rollouts DROP COLUMN release;

-- A pending effect: what to do (assign, unassign, touch) and to which set or declaration.
ALTER TABLE outbox ADD COLUMN action TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';
UPDATE outbox SET
    action = COALESCE(json_extract(effect, '$.effect'), ''),
    subject = COALESCE(json_extract(effect, '$.set'), json_extract(effect, '$.declaration'), '');
ALTER TABLE outbox DROP COLUMN effect;
