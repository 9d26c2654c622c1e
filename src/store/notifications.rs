//! Status-change webhook checkpoints: which job's notifications go where,
//! how far each job's delivery has got, and its retry state. The log is the
//! queue (a job's undelivered notifications are its events after the
//! checkpoint); these rows only say where to resume, so a delivery that
//! dies is taken over from its last acknowledged event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{StoreError, run, select_one, select_opt, select_planned};
use crate::domain::{AccountId, JobId};

const REGISTER: &str = "
    INSERT INTO notification_deliveries (job_id, account_id, endpoint_url, operator, next_attempt_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (job_id) DO NOTHING";
// Jobs with events past their checkpoint whose retry time has come and
// whose lease (if any) ran out: first the most overdue job of each account
// (none of the accounts this process is already delivering for), chosen
// without locking, then as many of those as asked for, locked and leased.
// One account's many jobs, or its slow endpoint, take one delivery slot of
// a process at a time, and no account's backlog crowds out the others.
const CLAIM: &str = "
    WITH candidates AS (
        SELECT DISTINCT ON (d.account_id) d.job_id, d.next_attempt_at
        FROM notification_deliveries d JOIN jobs j ON j.job_id = d.job_id
        WHERE NOT d.done AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
          AND j.version > d.delivered_sequence
          AND d.account_id <> ALL($3)
        ORDER BY d.account_id, d.next_attempt_at
    ), chosen AS (
        SELECT d.job_id
        FROM notification_deliveries d JOIN candidates c ON c.job_id = d.job_id
        WHERE NOT d.done AND (d.lease_until IS NULL OR d.lease_until < now())
        ORDER BY c.next_attempt_at
        LIMIT $4
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE notification_deliveries d
    SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond'
    WHERE d.job_id IN (SELECT job_id FROM chosen)
    RETURNING d.job_id, d.account_id, d.endpoint_url, d.delivered_sequence, d.attempts, d.operator";
// Only while the lease holds: a deliverer whose lease ran out (and may
// have been taken over) moves nothing.
const RENEW: &str = "
    UPDATE notification_deliveries
    SET lease_until = now() + $3 * interval '1 millisecond'
    WHERE job_id = $1 AND lease_owner = $2 AND lease_until > now()";
const ADVANCE: &str = "
    UPDATE notification_deliveries
    SET delivered_sequence = $3, attempts = 0, last_error = NULL, done = $4
    WHERE job_id = $1 AND lease_owner = $2 AND lease_until > now() AND delivered_sequence < $3";
const RELEASE_ALL: &str = "
    UPDATE notification_deliveries
    SET lease_owner = NULL, lease_until = NULL
    WHERE lease_owner = $1";
const RELEASE: &str = "
    UPDATE notification_deliveries
    SET lease_owner = NULL, lease_until = NULL
    WHERE job_id = $1 AND lease_owner = $2";
const FAILED: &str = "
    UPDATE notification_deliveries
    SET attempts = attempts + 1, last_error = $3,
        next_attempt_at = now() + $4 * interval '1 millisecond',
        lease_owner = NULL, lease_until = NULL
    WHERE job_id = $1 AND lease_owner = $2";
// Undelivered events and the age of the oldest, over every job whose
// delivery is not done: the subscribers' lag.
const LAG: &str = "
    SELECT coalesce(sum(j.version - d.delivered_sequence), 0)::bigint,
           coalesce(extract(epoch FROM now() - min(e.recorded_at)), 0)::float8
    FROM notification_deliveries d
    JOIN jobs j ON j.job_id = d.job_id
    LEFT JOIN job_events e ON e.job_id = d.job_id AND e.sequence = d.delivered_sequence + 1
    WHERE NOT d.done AND j.version > d.delivered_sequence";
const STATE: &str = "
    SELECT delivered_sequence, attempts, last_error, done
    FROM notification_deliveries WHERE job_id = $1";

/// Where a new job's status changes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationEndpoint<'a> {
    /// The URL.
    pub url: &'a str,
    /// Whether it is the server's default (`--notification-endpoint`), which
    /// is the operator's and not held to the invoke allowlist.
    pub operator: bool,
}

/// One job's delivery, as a process claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job_id: JobId,
    /// Its account.
    pub account: AccountId,
    /// Where its notifications go.
    pub endpoint_url: String,
    /// The sequence of its last delivered (or passed-over) event.
    pub delivered_sequence: u64,
    /// Failed attempts since the last delivery.
    pub attempts: u32,
    /// Whether the endpoint is the server's default (the operator's).
    pub operator: bool,
}

/// Where a job's delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    /// The sequence of its last delivered (or passed-over) event.
    pub delivered_sequence: u64,
    /// Failed attempts since the last delivery.
    pub attempts: u32,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Whether its terminal status was delivered.
    pub done: bool,
}

/// Sends the new job's status changes to `endpoint` (the operator's
/// default when `operator`), from its creation on: called in the
/// transaction that creates the job.
pub(crate) async fn register(
    tx: &impl GenericClient,
    job_id: JobId,
    account: &AccountId,
    endpoint: &NotificationEndpoint<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    run(
        tx,
        "REGISTER",
        REGISTER,
        &[
            &job_id.0,
            &account.0,
            &endpoint.url,
            &endpoint.operator,
            &now,
        ],
    )
    .await?;
    Ok(())
}

/// Leases up to `limit` due deliveries to `owner` for `lease`, one per
/// account and none of `busy` accounts.
pub async fn claim(
    client: &impl GenericClient,
    owner: Uuid,
    lease: Duration,
    busy: &[AccountId],
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let busy: Vec<&str> = busy.iter().map(|account| account.0.as_str()).collect();
    let rows = select_planned(
        client,
        "CLAIM",
        CLAIM,
        &[&owner, &(lease.as_millis() as f64), &busy, &(limit as i64)],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| Delivery {
            job_id: JobId(row.get(0)),
            account: AccountId(row.get(1)),
            endpoint_url: row.get(2),
            delivered_sequence: row.get::<_, i64>(3) as u64,
            attempts: row.get::<_, i32>(4) as u32,
            operator: row.get(5),
        })
        .collect())
}

/// Extends `owner`'s lease by `lease` from now, if it still holds it.
pub async fn renew(
    client: &impl GenericClient,
    job_id: JobId,
    owner: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let changed = run(
        client,
        "RENEW",
        RENEW,
        &[&job_id.0, &owner, &(lease.as_millis() as f64)],
    )
    .await?;
    Ok(changed == 1)
}

/// Gives back every lease `owner` holds (at shutdown).
pub async fn release_all(client: &impl GenericClient, owner: Uuid) -> Result<(), StoreError> {
    run(client, "RELEASE_ALL", RELEASE_ALL, &[&owner]).await?;
    Ok(())
}

/// Moves the checkpoint to `sequence` (and marks the delivery done after
/// the terminal status) if `owner` still holds an unexpired lease; false if
/// it lost it.
pub async fn advance(
    client: &impl GenericClient,
    job_id: JobId,
    owner: Uuid,
    sequence: u64,
    done: bool,
) -> Result<bool, StoreError> {
    let changed = run(
        client,
        "ADVANCE",
        ADVANCE,
        &[&job_id.0, &owner, &(sequence as i64), &done],
    )
    .await?;
    Ok(changed == 1)
}

/// Gives the lease back after a delivery went through.
pub async fn release(
    client: &impl GenericClient,
    job_id: JobId,
    owner: Uuid,
) -> Result<(), StoreError> {
    run(client, "RELEASE", RELEASE, &[&job_id.0, &owner]).await?;
    Ok(())
}

/// Records a failed attempt, why (at most 256 characters), and when to
/// try again; gives the lease back.
pub async fn failed(
    client: &impl GenericClient,
    job_id: JobId,
    owner: Uuid,
    error: &str,
    retry_in: Duration,
) -> Result<(), StoreError> {
    let error = crate::domain::text::truncated(error, 256);
    run(
        client,
        "FAILED",
        FAILED,
        &[&job_id.0, &owner, &error, &(retry_in.as_millis() as f64)],
    )
    .await?;
    Ok(())
}

/// Undelivered events over every job, and the age in seconds of the oldest.
pub async fn lag(client: &impl GenericClient) -> Result<(i64, f64), StoreError> {
    let row = select_one(client, "LAG", LAG, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Where one job's delivery stands, if the job has an endpoint.
pub async fn state(
    client: &impl GenericClient,
    job_id: JobId,
) -> Result<Option<DeliveryState>, StoreError> {
    let row = select_opt(client, "STATE", STATE, &[&job_id.0]).await?;
    Ok(row.map(|row| DeliveryState {
        delivered_sequence: row.get::<_, i64>(0) as u64,
        attempts: row.get::<_, i32>(1) as u32,
        last_error: row.get(2),
        done: row.get(3),
    }))
}
