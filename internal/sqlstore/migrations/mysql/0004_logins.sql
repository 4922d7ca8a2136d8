-- Sign-ins (one row per signed-in browser). The cookie carries a random token; only
-- its SHA-256 (hex) is kept, so the table cannot be used to sign in. Signing out
-- deletes the row; rows past expires_at are deleted as new sign-ins are made.
CREATE TABLE logins (
    token_hash CHAR(64)     NOT NULL,
    email      VARCHAR(254) NOT NULL,
    verified   TINYINT(1)   NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    expires_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (token_hash),
    KEY logins_by_email (email),
    KEY logins_by_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
