-- A device's time zone, from its answer to a DeviceInformation command (deadlines are on the
-- device's own clock); commands other than DeclarativeManagement, whose body is built when
-- queued rather than when sent.
ALTER TABLE enrollments ADD COLUMN time_zone TEXT;
ALTER TABLE commands ADD COLUMN request_type TEXT NOT NULL DEFAULT 'DeclarativeManagement';
