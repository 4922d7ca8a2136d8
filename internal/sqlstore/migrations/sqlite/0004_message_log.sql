-- New messages are appended to message_log, in arrival order, and moved into messages
-- (clustered by session) a few thousand at a time. Appending to one table's last page
-- lets a group commit write a few pages however many chats it carries, where inserting
-- straight into messages dirtied one page per chat per commit; the move then writes
-- each chat's rows together. Every read sees both tables (sqlstore/messagelog.go).
CREATE TABLE message_log (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    from_email TEXT    NOT NULL,
    to_email   TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
