-- Each person's delivered/read cursor per chat (the protocol's receipts), one small row
-- per person per chat, written only when a cursor moves forward.
CREATE TABLE receipts (
    session_id VARCHAR(64)  NOT NULL,
    email      VARCHAR(254) NOT NULL,
    received   BIGINT       NOT NULL DEFAULT 0,
    read_seq   BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A room's sessions newest first: a visit finds the room's chat in progress and a
-- revisit the person's latest chat there without scanning.
CREATE INDEX sessions_by_room ON sessions (room, initiated_at);
