-- A ring rollout started from a saved ring plan remembers it, so that a device enrolling later
-- joins the ring the plan puts it in (issue 18); the majors the feed listed at the start measure
-- pinned groups for it as they were measured for the others.
ALTER TABLE rollouts ADD COLUMN ring_plan TEXT;
ALTER TABLE rollouts ADD COLUMN ring_index INTEGER;
ALTER TABLE rollouts ADD COLUMN ring_majors TEXT;
