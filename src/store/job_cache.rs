//! Jobs as this process last read them, so that reading a job again costs a
//! primary-key probe instead of its whole state.
//!
//! Every read still asks PostgreSQL, in one round trip, for the row's
//! version (`xmin`, the transaction that wrote the row as it is now) and
//! gets the state only when that version is not the one cached. A read
//! therefore sees exactly what an uncached read would: the latest committed
//! row, with the account check in the SQL. What it saves is the state's
//! detoasting, its conversion to JSON text, the transfer and the parse.
//!
//! Two committed versions of one row never share an `xmin` (a transaction
//! that updates a row twice commits only the last), except when transaction
//! ids wrap around after 2³² transactions; entries older than [`MAX_AGE`] are
//! read whole again, which rules that out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres_types::Json;

use super::{StoreError, cached, error::During};
use crate::domain::{AccountId, Job, JobId};

/// The row's version, and its state only when that version differs from
/// `$3` (-1 when nothing is cached). `CASE` leaves `state` unread, so an
/// unchanged row is never detoasted.
const SELECT_JOB_UNLESS_SEEN: &str = "
    SELECT xmin::text::bigint,
           CASE WHEN xmin::text::bigint = $3 THEN NULL ELSE state END
    FROM jobs WHERE job_id = $1 AND ($2::text IS NULL OR account_id = $2)";

/// Jobs kept at most; a full cache forgets one to take another.
pub const CAPACITY: usize = 4096;

/// An entry older than this is read whole again.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// The jobs this process read last, by id.
pub struct JobCache {
    entries: Mutex<HashMap<JobId, Entry>>,
    capacity: usize,
}

#[derive(Clone)]
struct Entry {
    row_version: i64,
    job: Arc<Job>,
    read_at: Instant,
}

impl Default for JobCache {
    fn default() -> Self {
        JobCache::with_capacity(CAPACITY)
    }
}

impl JobCache {
    /// A cache that keeps at most `capacity` jobs.
    pub fn with_capacity(capacity: usize) -> JobCache {
        JobCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The job as committed now; with an account, only that account's job
    /// (another account's takes the path of one that does not exist).
    pub async fn load(
        &self,
        client: &deadpool_postgres::Client,
        id: JobId,
        account: Option<&AccountId>,
    ) -> Result<Arc<Job>, StoreError> {
        let known = self.fresh(id);
        let known_version = known.as_ref().map_or(-1, |entry| entry.row_version);
        let account = account.map(|account| account.0.as_str());
        let statement = cached(client, SELECT_JOB_UNLESS_SEEN, "SELECT_JOB_UNLESS_SEEN").await?;
        let row = client
            .query_opt(&statement, &[&id.0, &account, &known_version])
            .await
            .during("SELECT_JOB_UNLESS_SEEN")?;
        // Another account's read finds nothing but leaves the entry: every
        // read checks the row again anyway.
        let Some(row) = row else {
            return Err(StoreError::NotFound(id));
        };
        let row_version: i64 = row.try_get(0)?;
        let state: Option<Json<Job>> = row.try_get(1)?;
        match (state, known) {
            (None, Some(entry)) => Ok(entry.job),
            (Some(Json(job)), _) => {
                let job = Arc::new(job);
                self.keep(id, row_version, job.clone());
                Ok(job)
            }
            // The SQL leaves the state out only for the version asked about,
            // and that was asked only with an entry in hand.
            (None, None) => Err(StoreError::Unavailable(
                format!("job {id}: the database left out a state it had no reason to").into(),
            )),
        }
    }

    /// The entry for `id`, unless it is missing or too old.
    fn fresh(&self, id: JobId) -> Option<Entry> {
        self.lock()
            .get(&id)
            .filter(|entry| entry.read_at.elapsed() < MAX_AGE)
            .cloned()
    }

    fn keep(&self, id: JobId, row_version: i64, job: Arc<Job>) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            // Any entry will do: a forgotten job costs one whole read.
            if let Some(any) = entries.keys().next().copied() {
                entries.remove(&any);
            }
        }
        entries.insert(
            id,
            Entry {
                row_version,
                job,
                read_at: Instant::now(),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Entry>> {
        // The map is left whole by every holder, so a panic elsewhere
        // cannot have broken it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Jobs kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
