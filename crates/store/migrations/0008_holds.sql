-- Devices an admin holds back from every rollout, with a reason and an optional end.
CREATE TABLE holds (
    enrollment_id TEXT PRIMARY KEY NOT NULL,
    reason TEXT NOT NULL,
    until TEXT,                            -- RFC 3339; NULL: until lifted
    created_at TEXT NOT NULL
);
