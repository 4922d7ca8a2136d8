-- New messages are written to message_pending, one row per group commit holding every
-- message of that commit in one blob, and moved into message_chunks (below) a chat at
-- a time. The writer owns the file and keeps the pending messages in memory for
-- reads, so the pending table is only read at start (sqlstore/pending.go). One row
-- per commit costs one insert, where message_log cost an insert per message and a
-- delete per message again when it was moved.
INSERT OR FAIL INTO messages (session_id, seq, client_id, from_email, to_email, room, kind, text, created_at)
  SELECT session_id, seq, client_id, from_email, to_email, room, kind, text, created_at
    FROM message_log ORDER BY session_id, seq;
DROP TABLE message_log;
CREATE TABLE message_pending (
    id    INTEGER NOT NULL PRIMARY KEY,
    batch BLOB    NOT NULL
);
-- A session whose messages were deleted (purged) while some of them still waited in
-- message_pending: its rows in batches up to through_id are skipped when the batches
-- are read at start and dropped with those batches.
CREATE TABLE message_pending_drops (
    session_id TEXT    NOT NULL,
    through_id INTEGER NOT NULL,
    PRIMARY KEY (session_id, through_id)
) WITHOUT ROWID;
-- Merged messages are stored a chat's run of messages per row: each row holds, in the
-- same encoding as a pending batch, the messages first_seq..last_seq of one chat (at
-- most a few hundred), appended in merge order and found by the chat's index. One row
-- per merged run costs one insert where a row per message cost one each, and a chat's
-- messages are read with the rows that hold them. The rows of messages (and those just
-- moved there from message_log) are converted when the store opens (sqlstore/chunks.go);
-- the table stays, empty.
CREATE TABLE message_chunks (
    id         INTEGER NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    data       BLOB    NOT NULL
);
CREATE UNIQUE INDEX message_chunks_by_session ON message_chunks (session_id, last_seq);
