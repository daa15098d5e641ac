-- Rings: a wave may wait for the wave before it to pass a gate (issue 18). A gated wave is
-- recorded at once, with its devices, and its declarations go to the server only when the gate
-- opens.
ALTER TABLE rollouts ADD COLUMN ring_name TEXT;
ALTER TABLE rollouts ADD COLUMN gate_after INTEGER REFERENCES rollouts(id);
ALTER TABLE rollouts ADD COLUMN gate_min_updated_percent REAL;
ALTER TABLE rollouts ADD COLUMN gate_max_failed_percent REAL;
ALTER TABLE rollouts ADD COLUMN gate_max_failures_per_hour INTEGER;
ALTER TABLE rollouts ADD COLUMN halt_reason TEXT;
