-- Status-change webhooks. The event log is the queue: a job's undelivered
-- notifications are its events after `delivered_sequence`. This row is only
-- the job's delivery checkpoint and retry state, one per job that has an
-- endpoint, so an endpoint that fails holds back its own job alone.
-- A process delivering a job holds its lease (`lease_owner` until
-- `lease_until`); after a crash the lease runs out and another takes over
-- from the checkpoint.
CREATE TABLE notification_deliveries (
    job_id             uuid        PRIMARY KEY,
    account_id         text        NOT NULL,
    endpoint_url       text        NOT NULL,
    -- The server's --notification-endpoint (the operator's, trusted), not
    -- one the job named (held to the invoke allowlist at each delivery).
    operator           boolean     NOT NULL,
    delivered_sequence bigint      NOT NULL DEFAULT 0,
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL,
    last_error         text,
    lease_owner        uuid,
    lease_until        timestamptz,
    -- Set once the job's terminal status was delivered: nothing follows.
    done               boolean     NOT NULL DEFAULT false
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE NOT done;
