-- Pending sign-ins by emailed link. Only the SHA-256 of a link's token is kept (hex),
-- so the table cannot be used to sign in. A row is deleted when its link is used.
CREATE TABLE signins (
    token_hash CHAR(64)     NOT NULL,
    email      VARCHAR(254) NOT NULL,
    room       VARCHAR(64)  NOT NULL,
    expires_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (token_hash),
    KEY signins_by_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
