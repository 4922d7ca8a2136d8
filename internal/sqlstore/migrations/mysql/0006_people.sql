-- What Parley knows of a person beyond their email: the IANA time zone their browser
-- reported when they last signed in ('' when none), so times are shown in it.
CREATE TABLE people (
    email      VARCHAR(254) NOT NULL,
    time_zone  VARCHAR(64)  NOT NULL DEFAULT '',
    updated_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
