-- The unique (session_id, client_id) index is gone from SQLite: every message paid a
-- second B-tree insert for it, on a page of its own per session, and that doubled the
-- cost of a group commit. The writer owns the file and dedupes by client id from
-- memory (a hash of every client id of the sessions it writes, loaded from the rows
-- on first use), so the index only cost time. MySQL keeps its index: several replicas
-- append there, and only the database sees all of them.
CREATE TABLE messages_new (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    from_email TEXT    NOT NULL,
    to_email   TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
INSERT INTO messages_new SELECT session_id, seq, client_id, from_email, to_email, room, kind, text, created_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
