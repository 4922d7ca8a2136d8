-- Sign-ins (one row per signed-in browser). The cookie carries a random token; only
-- its SHA-256 (hex) is kept, so the table cannot be used to sign in. Signing out
-- deletes the row; rows past expires_at are deleted as new sign-ins are made.
CREATE TABLE logins (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    email      TEXT    NOT NULL,
    verified   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX logins_by_email ON logins (email);
CREATE INDEX logins_by_expiry ON logins (expires_at);
