-- Secrets every batchops process of one database shares, made once by the
-- first process that needs them: the key that signs ListJobs page tokens,
-- so a token the server did not issue is refused.
CREATE TABLE server_keys (
    name       text        PRIMARY KEY,
    key        bytea       NOT NULL CHECK (length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
