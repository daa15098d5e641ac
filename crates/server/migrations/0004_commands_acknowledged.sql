-- Acknowledged commands are deleted as they are acknowledged (nothing reads them again); the
-- ones stored before that are deleted here.
DELETE FROM commands WHERE result = 'Acknowledged';
