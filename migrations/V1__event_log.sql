-- The append-only event log, the jobs projection and the task work tables.

-- Refuses any change to a log row: the log is append-only.
CREATE FUNCTION batchops_refuse_log_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Every job event. `sequence` is dense per job from 1 (optimistic concurrency:
-- a writer inserts the sequence it expects, the unique key refuses a racer).
-- `position` orders the whole log; appends hold an advisory lock until commit,
-- so positions become visible in order and a reader never skips one.
CREATE TABLE job_events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          uuid        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    event_type      text        NOT NULL,
    schema_version  smallint    NOT NULL,
    payload         jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    CONSTRAINT job_events_job_sequence UNIQUE (job_id, sequence)
);

CREATE TRIGGER job_events_append_only
    BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION batchops_refuse_log_change();
CREATE TRIGGER job_events_no_truncate
    BEFORE TRUNCATE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION batchops_refuse_log_change();

-- The final result of every task: one row per task, never changed.
CREATE TABLE task_results (
    job_id           uuid        NOT NULL,
    task_number      bigint      NOT NULL,
    succeeded        boolean     NOT NULL,
    http_status_code integer     NOT NULL,
    error_code       text,
    result_message   text,
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (job_id, task_number)
);

CREATE TRIGGER task_results_append_only
    BEFORE UPDATE OR DELETE ON task_results
    FOR EACH ROW EXECUTE FUNCTION batchops_refuse_log_change();
CREATE TRIGGER task_results_no_truncate
    BEFORE TRUNCATE ON task_results
    FOR EACH STATEMENT EXECUTE FUNCTION batchops_refuse_log_change();

-- The projection: one row per job, the fold of its events, written in the
-- same transaction as they are. `state` is the whole folded job; the other
-- columns copy what queries filter and sort on.
CREATE TABLE jobs (
    job_id               uuid        PRIMARY KEY,
    account_id           text        NOT NULL,
    client_request_token text        NOT NULL,
    request_fingerprint  text        NOT NULL,
    status               text        NOT NULL,
    priority             integer     NOT NULL,
    created_at           timestamptz NOT NULL,
    version              bigint      NOT NULL,
    state                jsonb       NOT NULL,
    CONSTRAINT jobs_idempotency UNIQUE (account_id, client_request_token)
);

CREATE INDEX jobs_by_account_newest ON jobs (account_id, created_at DESC, job_id DESC);
CREATE INDEX jobs_unfinished ON jobs (status, priority DESC, created_at)
    WHERE status NOT IN ('Complete', 'Cancelled', 'Failed');

-- The objects of a job, numbered in manifest order.
CREATE TABLE tasks (
    job_id      uuid   NOT NULL,
    task_number bigint NOT NULL,
    bucket      text   NOT NULL,
    key         text   NOT NULL,
    version_id  text,
    PRIMARY KEY (job_id, task_number)
);

-- Work units: a run of consecutive tasks claimed and finished together. A row
-- is deleted in the transaction that records its tasks' results.
CREATE TABLE task_chunks (
    job_id           uuid        NOT NULL,
    chunk_number     bigint      NOT NULL,
    first_task       bigint      NOT NULL,
    task_count       integer     NOT NULL,
    lease_owner      uuid,
    lease_expires_at timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, chunk_number)
);
