//! The event store on PostgreSQL: the append-only job event log, the task
//! result log, the `jobs` projection and the task work tables. All SQL of the
//! service lives in this module.
//!
//! Every change to a job goes through [`jobs::record`]: lock the job's row,
//! `decide`, append the events with the sequence numbers the row's version
//! implies, rewrite the projection, NOTIFY, and let the caller commit. Appends
//! to `job_events` hold a transaction-scoped advisory lock until commit, so log
//! positions become visible in increasing order.

mod error;
pub mod job_cache;
pub mod jobs;
pub mod keys;
mod migrate;
pub mod notifications;
pub mod pages;
mod replay;
pub mod tasks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, error::SqlState};
use tracing::info;

use error::During;

use crate::domain::{AccountId, JobId};

pub use error::StoreError;
pub use job_cache::JobCache;
pub use jobs::{JobPage, LoggedEvent, RecordedEvent};
pub use migrate::migrate;
pub use replay::replay;
pub use tasks::{ClaimedChunk, PreparedCount};

/// The channel NOTIFY wakes listeners on after job events commit.
pub const EVENTS_CHANNEL: &str = "batchops_job_events";

/// The channel NOTIFY wakes listeners on after a chunk's results commit.
pub const PROGRESS_CHANNEL: &str = "batchops_job_progress";

/// What a progress NOTIFY says: the job and its account, so that a
/// listener need not read another account's job to learn it is not its own.
pub fn progress_payload(job: JobId, account: &AccountId) -> String {
    format!("{job} {}", account.0)
}

/// The job and (when the payload names it) the account of a progress
/// NOTIFY; `None` for a payload that is neither. A process of an earlier
/// version sends the job alone.
pub fn parse_progress_payload(payload: &str) -> Option<(JobId, Option<AccountId>)> {
    let (job, account) = match payload.split_once(' ') {
        Some((job, account)) => (job, Some(AccountId(account.to_owned()))),
        None => (payload, None),
    };
    Some((JobId(uuid::Uuid::parse_str(job).ok()?), account))
}

/// A pool of connections to the batchops database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl Store {
    /// Connects to `database_url`, creating the database when it does not
    /// exist yet. Does not migrate.
    pub async fn connect(database_url: &str, max_connections: usize) -> Result<Store, StoreError> {
        let config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        create_database_if_missing(&config).await?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Store { pool, config })
    }

    /// A dedicated connection that LISTENs on `channels` and hands every
    /// notification's payload to `on_notify`, until the connection ends.
    pub async fn listen(
        &self,
        channels: &[&str],
        mut on_notify: impl FnMut(&str, &str) + Send,
    ) -> Result<(), StoreError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        let listening = async {
            for channel in channels {
                client.batch_execute(&format!("LISTEN {channel}")).await?;
            }
            futures::future::pending::<Result<(), tokio_postgres::Error>>().await
        };
        tokio::pin!(listening);
        loop {
            tokio::select! {
                outcome = &mut listening => return outcome.map_err(StoreError::from),
                message = futures::StreamExt::next(&mut messages) => match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                        on_notify(note.channel(), note.payload());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => return Err(StoreError::Unavailable("listen connection closed".into())),
                },
            }
        }
    }

    /// Applies pending migrations under the migration lock.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        migrate(&mut client).await
    }

    /// A pooled connection. Its statement cache lives as long as the
    /// connection: see [`cached`].
    pub async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The pool's size, idle connections and maximum, for metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}

async fn create_database_if_missing(config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let Some(name) = config.get_dbname() else {
        return Ok(());
    };
    match connect_once(config).await {
        Ok(()) => return Ok(()),
        Err(error) if error.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(error) => return Err(error.into()),
    }
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => info!(database = name, "database created"),
        // Another process created it at the same moment.
        Err(error)
            if error.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
        Err(error) => return Err(error.into()),
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

async fn connect_once(config: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// `sql` prepared once per pooled connection and kept in its statement
/// cache. The engine runs the same few statements for every chunk; a cached
/// one costs the database a Bind and an Execute instead of a Parse and a
/// fresh plan, and the engine one round trip instead of two.
pub(crate) async fn cached(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    name: &'static str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(sql).await.during(name)
}

/// Parameters of a statement.
pub(crate) type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// The rows of the [`cached`] statement `sql`, named `name` in errors.
pub(crate) async fn select(
    client: &impl deadpool_postgres::GenericClient,
    name: &'static str,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = cached(client, sql, name).await?;
    client.query(&statement, params).await.during(name)
}

/// The rows of `sql`, planned afresh for these parameters (not cached).
/// For reads of a range or of the jobs in some statuses, such as the events
/// after a log position, a page of jobs after a cursor or the engine's
/// polls: the best plan depends on the values, and a cached statement's
/// generic plan, made without them, can read far more of a large table
/// than they select (WatchJobs catch-up went from 0.6 to 4 ms over 1,000
/// jobs with one).
pub(crate) async fn select_planned(
    client: &impl deadpool_postgres::GenericClient,
    name: &'static str,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    client.query(sql, params).await.during(name)
}

/// The row of the [`cached`] statement `sql` (a key lookup), if there is one.
pub(crate) async fn select_opt(
    client: &impl deadpool_postgres::GenericClient,
    name: &'static str,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    Ok(select(client, name, sql, params).await?.into_iter().next())
}

/// The row of the [`cached`] statement `sql`, which always returns one.
pub(crate) async fn select_one(
    client: &impl deadpool_postgres::GenericClient,
    name: &'static str,
    sql: &str,
    params: &Params<'_>,
) -> Result<tokio_postgres::Row, StoreError> {
    only_row(select(client, name, sql, params).await?, name)
}

/// The row of a statement that always returns one (an aggregate, an
/// `EXISTS`, an `INSERT … RETURNING`).
pub(crate) fn only_row(
    rows: Vec<tokio_postgres::Row>,
    name: &'static str,
) -> Result<tokio_postgres::Row, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt(format!("{name} returned no row")))
}

/// Runs the [`cached`] statement `sql`; the number of rows it changed.
pub(crate) async fn run(
    client: &impl deadpool_postgres::GenericClient,
    name: &'static str,
    sql: &str,
    params: &Params<'_>,
) -> Result<u64, StoreError> {
    let statement = cached(client, sql, name).await?;
    client.execute(&statement, params).await.during(name)
}

#[cfg(test)]
mod tests {
    use super::{parse_progress_payload, progress_payload};
    use crate::domain::{AccountId, JobId, JobStatus};

    /// A progress NOTIFY names the job and its account; one from an
    /// earlier version names the job alone; anything else is no notice.
    #[test]
    fn a_progress_payload_names_the_job_and_its_account() {
        let job = JobId(uuid::Uuid::now_v7());
        let account = AccountId("111122223333".into());
        assert_eq!(
            parse_progress_payload(&progress_payload(job, &account)),
            Some((job, Some(account)))
        );
        assert_eq!(parse_progress_payload(&job.to_string()), Some((job, None)));
        assert_eq!(parse_progress_payload("not a job 111122223333"), None);
        assert_eq!(parse_progress_payload(""), None);
    }

    /// Every status rule has one home, the domain: a statement that selects
    /// by status takes the statuses as a parameter made by a `JobStatus`
    /// predicate (`JobStatus::all_where`), never as a literal of its own.
    #[test]
    fn no_statement_names_a_status() {
        let sources = [
            ("jobs.rs", include_str!("jobs.rs")),
            ("tasks.rs", include_str!("tasks.rs")),
            ("keys.rs", include_str!("keys.rs")),
            ("migrate.rs", include_str!("migrate.rs")),
        ];
        for (file, text) in sources {
            for status in JobStatus::ALL {
                let literal = format!("'{}'", status.as_str());
                assert!(
                    !text.contains(&literal),
                    "store/{file} writes {literal} in SQL; pass the statuses of a JobStatus \
                     predicate as a parameter instead"
                );
            }
        }
    }
}
