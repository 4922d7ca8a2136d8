-- Chat sessions and their messages. Times are DATETIME(6) in UTC (NULL when unset).
-- Binary collation: room names and client ids compare exactly as on SQLite.
CREATE TABLE sessions (
    id                     VARCHAR(64)  NOT NULL,
    room                   VARCHAR(64)  NOT NULL,
    host_email             VARCHAR(254) NOT NULL,
    participant_email      VARCHAR(254) NOT NULL DEFAULT '',
    status                 VARCHAR(16)  NOT NULL,
    initiated_at           DATETIME(6)  NOT NULL,
    ended_at               DATETIME(6)  NULL,
    ended_by               VARCHAR(254) NOT NULL DEFAULT '',
    completed_at           DATETIME(6)  NULL,
    chat_history           VARCHAR(512) NOT NULL DEFAULT '',
    archive_key            VARCHAR(512) NOT NULL DEFAULT '',
    archive_size           BIGINT       NOT NULL DEFAULT 0,
    archive_sha256         VARCHAR(64)  NOT NULL DEFAULT '',
    message_count          BIGINT       NOT NULL DEFAULT 0,
    host_mailed_at         DATETIME(6)  NULL,
    participant_mailed_at  DATETIME(6)  NULL,
    host_mail_error        VARCHAR(1024) NOT NULL DEFAULT '',
    participant_mail_error VARCHAR(1024) NOT NULL DEFAULT '',
    purged_at              DATETIME(6)  NULL,
    -- The room while the chat is in progress, NULL otherwise: its unique index lets the
    -- database refuse a second chat in progress in a room (NULLs never collide).
    active_room            VARCHAR(64)  AS (IF(status = 'inprogress', room, NULL)) STORED,
    PRIMARY KEY (id),
    UNIQUE KEY sessions_one_inprogress_per_room (active_room),
    KEY sessions_by_host (host_email, initiated_at),
    KEY sessions_by_participant (participant_email, initiated_at),
    KEY sessions_by_status (status, ended_at),
    KEY sessions_to_purge (status, purged_at, completed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE messages (
    session_id VARCHAR(64)  NOT NULL,
    seq        BIGINT       NOT NULL,
    client_id  VARCHAR(64)  NOT NULL,
    from_email VARCHAR(254) NOT NULL,
    to_email   VARCHAR(254) NOT NULL,
    room       VARCHAR(64)  NOT NULL,
    kind       VARCHAR(16)  NOT NULL,
    text       MEDIUMTEXT   NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (session_id, seq),
    UNIQUE KEY messages_client_id (session_id, client_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The last seq handed out per session. Its row is the lock that serialises appends to
-- one session across replicas (SELECT ... FOR UPDATE), so seqs never repeat or skip.
CREATE TABLE message_seqs (
    session_id VARCHAR(64) NOT NULL,
    last_seq   BIGINT      NOT NULL,
    PRIMARY KEY (session_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
