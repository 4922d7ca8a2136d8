-- Pending sign-ins by emailed link. Only the SHA-256 of a link's token is kept (hex),
-- so the table cannot be used to sign in. A row is deleted when its link is used.
CREATE TABLE signins (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    email      TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX signins_by_expiry ON signins (expires_at);
