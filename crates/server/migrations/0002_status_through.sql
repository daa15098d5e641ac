-- Status reports are acknowledged once stored raw and merged into `status` later, in batches:
-- the id of the newest raw report merged so far, so a restart merges only what is left.
INSERT INTO counters (name, value) VALUES ('status_through', (SELECT COALESCE(MAX(id), 0) FROM status_reports));
