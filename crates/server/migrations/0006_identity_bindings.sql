-- The identity certificates each device enrolled with (NanoMDM's cert-hash associations): bound
-- at Authenticate, required on every later request. A certificate belongs to one device.
CREATE TABLE identity_bindings (
    device_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    subject TEXT NOT NULL,
    bound_at TEXT NOT NULL,
    PRIMARY KEY (device_id, fingerprint)
) WITHOUT ROWID;
CREATE INDEX identity_bindings_by_fingerprint ON identity_bindings (fingerprint);
