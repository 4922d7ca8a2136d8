-- Each person's delivered/read cursor per chat (the protocol's receipts), one small row
-- per person per chat, written only when a cursor moves forward.
CREATE TABLE receipts (
    session_id TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    received   INTEGER NOT NULL DEFAULT 0,
    read_seq   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, email)
) WITHOUT ROWID;

-- A room's sessions newest first: a revisit finds the person's latest chat there.
CREATE INDEX sessions_by_room ON sessions (room, initiated_at);
