-- Raw status reports are an append-only log with no per-enrollment index: that index put a
-- random page write under every report and cost a third of ingest. Each enrollment lists its
-- newest raw reports instead (ids, newest first, comma-separated), written with its merged status.
ALTER TABLE enrollments ADD COLUMN recent_reports TEXT NOT NULL DEFAULT '';

UPDATE enrollments SET recent_reports = COALESCE((
    SELECT group_concat(id, ',') FROM (
        SELECT r.id FROM status_reports r WHERE r.enrollment_id = enrollments.id
        ORDER BY r.id DESC LIMIT 16
    )
), '');

DELETE FROM status_reports WHERE id NOT IN (
    SELECT r.id FROM enrollments e JOIN status_reports r ON r.enrollment_id = e.id
    WHERE r.id >= COALESCE((
        SELECT k.id FROM status_reports k WHERE k.enrollment_id = e.id
        ORDER BY k.id DESC LIMIT 1 OFFSET 15
    ), 0)
) AND id <= (SELECT value FROM counters WHERE name = 'status_through');

DROP INDEX status_reports_by_enrollment;
