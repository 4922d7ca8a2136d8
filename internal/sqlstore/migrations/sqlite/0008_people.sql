-- What Parley knows of a person beyond their email: the IANA time zone their browser
-- reported when they last signed in ('' when none), so times are shown in it.
CREATE TABLE people (
    email      TEXT    NOT NULL PRIMARY KEY,
    time_zone  TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
