-- The console ticks only the enforcement records a tick can change: with every record the engine
-- gives the earliest time that happens (unix seconds; NULL when only an event can change it).
ALTER TABLE enforcements ADD COLUMN tick_due INTEGER;
-- Records written before this carry no such time: due at once, so the first tick computes it.
UPDATE enforcements SET tick_due = 0
 WHERE phase NOT IN ('excluded', 'failed', 'cleaned_up', 'cancelled', 'planned', 'updated', 'unassigned');
CREATE INDEX enforcements_tick_due ON enforcements(rollout_id, tick_due) WHERE tick_due IS NOT NULL;
-- The tick plans, past their grace period, the devices that enrolled but never reported (the
-- others are planned when their reports come in): an index of just those.
CREATE INDEX devices_never_reported ON devices(enrollment_id) WHERE last_report_at IS NULL;
