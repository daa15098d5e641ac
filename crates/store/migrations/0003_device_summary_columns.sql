-- The devices table lists 100,000 devices at once: the facts it shows, as plain columns written
-- beside the JSON facts, so listing them reads no JSON.
ALTER TABLE devices ADD COLUMN model TEXT;
ALTER TABLE devices ADD COLUMN model_family TEXT;
ALTER TABLE devices ADD COLUMN serial_number TEXT;
ALTER TABLE devices ADD COLUMN os_version TEXT;
ALTER TABLE devices ADD COLUMN build TEXT;
ALTER TABLE devices ADD COLUMN supplemental_build TEXT;
ALTER TABLE devices ADD COLUMN extra TEXT NOT NULL DEFAULT '';
UPDATE devices SET
    model = json_extract(facts, '$.model'),
    model_family = json_extract(facts, '$.model_family'),
    serial_number = json_extract(facts, '$.serial_number'),
    os_version = json_extract(facts, '$.os_version'),
    build = json_extract(facts, '$.build'),
    supplemental_build = json_extract(facts, '$.supplemental_build'),
    extra = COALESCE(json_extract(facts, '$.extra'), '');
