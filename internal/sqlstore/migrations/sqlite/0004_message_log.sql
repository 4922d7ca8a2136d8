-- New messages are appended to message_log, in arrival order within one of 16 parts
-- (chosen by a hash of the session id), and a whole part at a time is moved into
-- messages (clustered by session). Appending to the ends of the parts lets a group
-- commit write a few pages however many chats it carries, where inserting straight
-- into messages dirtied one page per chat per commit; a move then writes each chat's
-- rows together. Every read sees both tables (sqlstore/messagelog.go).
CREATE TABLE message_log (
    part       INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    from_email TEXT    NOT NULL,
    to_email   TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (part, id)
) WITHOUT ROWID;
