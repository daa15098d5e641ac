-- A rollout may cover only some devices (chosen in the wizard, or one wave of several). No rows
-- means every device of the release's platform.
CREATE TABLE rollout_scope (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    enrollment_id TEXT NOT NULL,
    PRIMARY KEY (rollout_id, enrollment_id)
);
