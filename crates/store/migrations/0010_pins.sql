-- Groups kept behind the newest major (N-1 pinning): the devices a filter matches take only the
-- releases of the major `majors_behind` places below the newest the feed lists (issue 18).
CREATE TABLE pins (
    name TEXT PRIMARY KEY NOT NULL,
    filter_platform TEXT,
    filter_model TEXT,
    filter_os TEXT,
    filter_name TEXT,
    filter_serial TEXT,
    majors_behind INTEGER NOT NULL
);
