//! Applies `migrations/V{n}__{name}.sql` in order, once each, under an
//! advisory lock so that several processes starting together agree.

use tokio_postgres::Client;
use tracing::info;

use super::StoreError;

/// The migrations compiled into the binary, in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../../migrations/V1__event_log.sql"),
    ),
    (
        2,
        "server_keys",
        include_str!("../../migrations/V2__server_keys.sql"),
    ),
    (
        3,
        "dry_runs",
        include_str!("../../migrations/V3__dry_runs.sql"),
    ),
    (
        4,
        "notifications",
        include_str!("../../migrations/V4__notifications.sql"),
    ),
];

/// An arbitrary constant that names the migration lock.
const MIGRATION_LOCK: i64 = 0x6261_7463_686f_7073;

/// Applies every migration not yet applied. Returns how many ran.
pub async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply_missing(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    outcome
}

async fn apply_missing(client: &mut Client) -> Result<usize, StoreError> {
    // Asked first rather than `CREATE TABLE IF NOT EXISTS`, whose NOTICE
    // ("already exists, skipping") would be logged at every start.
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
    }
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // A database a newer batchops migrated holds what this one does not
    // know (new statuses, new fields a job depends on, such as a dry run's):
    // this binary must not run jobs on it.
    if let Some(newer) = applied
        .iter()
        .find(|version| !MIGRATIONS.iter().any(|(known, _, _)| known == *version))
    {
        return Err(StoreError::Corrupt(format!(
            "the database has migration {newer}, which this batchops does not know: \
             it was migrated by a newer version; run that version"
        )));
    }
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        info!(version, name, "migration applied");
        count += 1;
    }
    Ok(count)
}
