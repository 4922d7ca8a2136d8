-- Chat sessions and their messages. Times are INTEGER unix microseconds (NULL when
-- unset), the precision every Parley store keeps, so values round-trip exactly.
CREATE TABLE sessions (
    id                     TEXT    NOT NULL PRIMARY KEY,
    room                   TEXT    NOT NULL,
    host_email             TEXT    NOT NULL,
    participant_email      TEXT    NOT NULL DEFAULT '',
    status                 TEXT    NOT NULL,
    initiated_at           INTEGER NOT NULL,
    ended_at               INTEGER,
    ended_by               TEXT    NOT NULL DEFAULT '',
    completed_at           INTEGER,
    chat_history           TEXT    NOT NULL DEFAULT '',
    archive_key            TEXT    NOT NULL DEFAULT '',
    archive_size           INTEGER NOT NULL DEFAULT 0,
    archive_sha256         TEXT    NOT NULL DEFAULT '',
    message_count          INTEGER NOT NULL DEFAULT 0,
    host_mailed_at         INTEGER,
    participant_mailed_at  INTEGER,
    host_mail_error        TEXT    NOT NULL DEFAULT '',
    participant_mail_error TEXT    NOT NULL DEFAULT '',
    purged_at              INTEGER
);

-- At most one chat in progress per room, enforced by the database itself so that
-- concurrent Enter calls can never start two.
CREATE UNIQUE INDEX sessions_one_inprogress_per_room ON sessions (room) WHERE status = 'inprogress';
CREATE INDEX sessions_by_host ON sessions (host_email, initiated_at);
CREATE INDEX sessions_by_participant ON sessions (participant_email, initiated_at);
CREATE INDEX sessions_ending ON sessions (ended_at) WHERE status = 'ending';
CREATE INDEX sessions_to_purge ON sessions (completed_at) WHERE status = 'completed' AND purged_at IS NULL AND archive_key <> '';

-- Messages are clustered by (session_id, seq): reading a session is a key range read.
CREATE TABLE messages (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    from_email TEXT    NOT NULL,
    to_email   TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, client_id)
) WITHOUT ROWID;
