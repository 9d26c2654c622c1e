//! Status webhooks: every status change of a job that has a notification
//! endpoint is POSTed there as the EventBridge event AWS sends for it
//! ([`crate::aws::eventbridge`]).
//!
//! The event log is the queue. Each job's delivery keeps a durable
//! checkpoint, the sequence of its last acknowledged event
//! ([`crate::store::notifications`]); a deliverer leases the job, folds its
//! stream from the start, POSTs the status changes after the checkpoint one
//! at a time in sequence order, and moves the checkpoint after each 2xx. So
//! delivery is at least once (a crash between a POST and its checkpoint
//! sends that event again, with the same id) and in order per job (one
//! lease at a time, in sequence order). A failure (no answer, a timeout, a
//! non-2xx status) keeps the checkpoint, and the job is tried again after a
//! backoff that doubles up to `retry_max`, for as long as it takes. Each
//! process delivers for at most one job per account at a time, so one
//! account's failing or slow endpoint takes one slot, and other accounts'
//! notifications go on; each job has its own checkpoint, so one failing
//! endpoint holds back only its own job.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use tokio::sync::broadcast;

use super::{Notice, Notifier};
use crate::aws::eventbridge::{self, StatusChange};
use crate::domain::{self, AccountId, Job, JobStatus};
use crate::metrics::Metrics;
use crate::objects::invoke::{Allowlist, check_endpoint, without_url};
use crate::store::notifications::{self, Delivery};
use crate::store::{LoggedEvent, RecordedEvent, Store, StoreError, jobs};

/// Tuning of webhook delivery.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    /// The region in job ARNs (S3 Control's).
    pub region: String,
    /// How long one POST may take.
    pub timeout: Duration,
    /// The first retry's delay; it doubles per failed attempt.
    pub retry_base: Duration,
    /// The longest delay between attempts.
    pub retry_max: Duration,
    /// How often to look for due deliveries without a wake-up.
    pub poll_interval: Duration,
    /// Jobs this process delivers for at once (one per account).
    pub concurrency: usize,
}

/// Status changes POSTed per claim, before the job goes back in line.
const EVENTS_PER_LEASE: usize = 4;

/// A lease lasts one POST's timeout and this much more.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Events read from a job's stream per query while folding it.
const EVENTS_PAGE: usize = 500;

/// Delivers until `shutdown`; deliveries in flight get [`SHUTDOWN_GRACE`]
/// to finish.
pub(crate) async fn run(
    store: Store,
    allowlist: Arc<Allowlist>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    config: WebhookConfig,
    shutdown: CancellationToken,
) {
    let deliverer = Arc::new(Deliverer {
        store,
        allowlist,
        metrics,
        http: crate::objects::invoke::http_client(),
        owner: Uuid::new_v4(),
        // Renewed before each POST: one POST, and the checkpoint after it.
        lease: config.timeout + LEASE_MARGIN,
        config,
    });
    let busy: Arc<Mutex<HashSet<AccountId>>> = Arc::default();
    // Which account each running delivery is for, so that its slot frees
    // even if the delivery panicked.
    let mut accounts: HashMap<tokio::task::Id, AccountId> = HashMap::new();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut notices = notifier.subscribe();
    loop {
        let free = deliverer
            .config
            .concurrency
            .max(1)
            .saturating_sub(running.len());
        if free > 0 {
            let taken: Vec<AccountId> = lock(&busy).iter().cloned().collect();
            match deliverer.claim(&taken, free).await {
                Ok(claimed) => {
                    for delivery in claimed {
                        lock(&busy).insert(delivery.account.clone());
                        let account = delivery.account.clone();
                        let deliverer = deliverer.clone();
                        let task = running.spawn(async move { deliverer.deliver(delivery).await });
                        accounts.insert(task.id(), account);
                    }
                }
                Err(error) => warn!(%error, "webhooks: claiming deliveries failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Any committed event may be a status change to deliver.
            _ = events_committed(&mut notices) => {}
            _ = tokio::time::sleep(deliverer.config.poll_interval) => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(error) => error.id(),
                };
                if let Some(account) = accounts.remove(&task) {
                    lock(&busy).remove(&account);
                }
            }
        }
    }
    // Deliveries in flight get a moment to finish; one that waits on a slow
    // endpoint is dropped, and its lease runs out for whoever comes next.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
        // What was cut short is taken up at once after a restart, not
        // after the leases run out.
        if let Ok(client) = deliverer.store.client().await
            && let Err(error) = notifications::release_all(&client, deliverer.owner).await
        {
            warn!(%error, "webhook leases not released; they run out");
        }
    }
}

/// Waits for a notice that events were committed (progress notices, one
/// per chunk, say nothing about status); pends forever if the notifier is
/// gone, leaving the poll interval.
async fn events_committed(notices: &mut broadcast::Receiver<Notice>) {
    loop {
        match notices.recv().await {
            Ok(Notice::Events(_)) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(Notice::Progress(..) | Notice::Stopping) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// How long deliveries in flight may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Deliverer {
    store: Store,
    allowlist: Arc<Allowlist>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    /// This process's lease owner id.
    owner: Uuid,
    lease: Duration,
    config: WebhookConfig,
}

/// How one delivery attempt ended.
enum Attempt {
    /// Everything due was delivered, or the lease's share of it.
    Delivered,
    /// The endpoint failed; why, and whether earlier events of the attempt
    /// went through (then the backoff starts afresh).
    Failed { why: String, progressed: bool },
    /// Another process took the job over (this lease ran out).
    LostLease,
}

/// A status change to POST, built while the job's stream was folded.
struct Pending {
    sequence: u64,
    position: i64,
    id: Uuid,
    event: serde_json::Value,
    /// Whether the job was in a terminal status after it.
    terminal: bool,
}

/// What is owed for one lease: up to [`EVENTS_PER_LEASE`] status changes
/// after the checkpoint, and the sequence the checkpoint may move to once
/// they are delivered (past events that need no POST).
struct Owed {
    pending: Vec<Pending>,
    through: u64,
    terminal: bool,
}

impl Deliverer {
    async fn claim(&self, busy: &[AccountId], limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let client = self.store.client().await?;
        notifications::claim(&client, self.owner, self.lease, busy, limit).await
    }

    async fn deliver(&self, delivery: Delivery) {
        let (why, progressed) = match self.attempt(&delivery).await {
            Ok(Attempt::Delivered) => {
                if let Err(error) = self.release(&delivery).await {
                    warn!(job_id = %delivery.job_id, %error, "webhook lease not released; it runs out");
                }
                return;
            }
            Ok(Attempt::LostLease) => return,
            Ok(Attempt::Failed { why, progressed }) => (why, progressed),
            Err(error) => {
                warn!(job_id = %delivery.job_id, %error, "webhook delivery interrupted");
                ("the delivery was interrupted".to_owned(), false)
            }
        };
        let earlier = if progressed { 0 } else { delivery.attempts };
        let retry_in = backoff(&self.config, earlier);
        warn!(
            job_id = %delivery.job_id,
            attempts = earlier + 1,
            retry_in_ms = retry_in.as_millis() as u64,
            error = %why,
            "webhook delivery failed; it is retried"
        );
        if let Err(error) = self.fail(&delivery, &why, retry_in).await {
            // The lease runs out and the job is taken again from its checkpoint.
            warn!(job_id = %delivery.job_id, %error, "webhook failure not recorded");
        }
    }

    async fn release(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let client = self.store.client().await?;
        notifications::release(&client, delivery.job_id, self.owner).await
    }

    async fn fail(
        &self,
        delivery: &Delivery,
        why: &str,
        retry_in: Duration,
    ) -> Result<(), StoreError> {
        let client = self.store.client().await?;
        notifications::failed(&client, delivery.job_id, self.owner, why, retry_in).await
    }

    /// POSTs what is owed in order, renewing the lease before each POST and
    /// moving the checkpoint after each 2xx. No database connection is held
    /// while an endpoint is called.
    async fn attempt(&self, delivery: &Delivery) -> Result<Attempt, StoreError> {
        let owed = self.owed(delivery).await?;
        let mut progressed = false;
        for pending in &owed.pending {
            if !self.renew(delivery).await? {
                return Ok(Attempt::LostLease);
            }
            if let Err(why) = self.post(delivery, pending).await {
                self.metrics.notification_sent(false);
                return Ok(Attempt::Failed { why, progressed });
            }
            self.metrics.notification_sent(true);
            debug!(job_id = %delivery.job_id, sequence = pending.sequence, "status change delivered");
            if !self
                .advance(delivery, pending.sequence, pending.terminal)
                .await?
            {
                return Ok(Attempt::LostLease);
            }
            progressed = true;
        }
        // Events that need no POST (priority, tags, reports) are passed over.
        let reached = owed
            .pending
            .last()
            .map_or(delivery.delivered_sequence, |p| p.sequence);
        if owed.through > reached && !self.advance(delivery, owed.through, owed.terminal).await? {
            return Ok(Attempt::LostLease);
        }
        Ok(Attempt::Delivered)
    }

    async fn renew(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        notifications::renew(&client, delivery.job_id, self.owner, self.lease).await
    }

    async fn advance(
        &self,
        delivery: &Delivery,
        sequence: u64,
        done: bool,
    ) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        notifications::advance(&client, delivery.job_id, self.owner, sequence, done).await
    }

    /// Folds the job's stream from its start and collects the status
    /// changes after the checkpoint, as the events to POST.
    async fn owed(&self, delivery: &Delivery) -> Result<Owed, StoreError> {
        let client = self.store.client().await?;
        let mut job: Option<Job> = None;
        let mut owed = Owed {
            pending: Vec::new(),
            through: delivery.delivered_sequence,
            terminal: false,
        };
        let mut after = 0;
        loop {
            let page = jobs::events_after(&client, delivery.job_id, after, EVENTS_PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(owed);
            };
            after = last.sequence;
            for recorded in &page {
                let change = fold(&mut job, recorded);
                if recorded.sequence <= delivery.delivered_sequence {
                    continue;
                }
                let Some(job) = job.as_ref() else {
                    return Err(StoreError::Corrupt(format!(
                        "job {} has events before its creation",
                        delivery.job_id
                    )));
                };
                if let Some((previous, reason)) = change {
                    if owed.pending.len() == EVENTS_PER_LEASE {
                        return Ok(owed);
                    }
                    let failures = if matches!(job.status, JobStatus::Failing | JobStatus::Failed) {
                        job.failure_reasons.as_slice()
                    } else {
                        &[]
                    };
                    let change = StatusChange {
                        job,
                        previous,
                        reason: reason.as_deref(),
                        failures,
                        position: recorded.position,
                        sequence: recorded.sequence,
                        at: recorded.recorded_at,
                    };
                    owed.pending.push(Pending {
                        sequence: recorded.sequence,
                        position: recorded.position,
                        id: eventbridge::event_id(job.id, recorded.sequence),
                        event: eventbridge::job_state_change(&change, &self.config.region),
                        terminal: job.status.is_terminal(),
                    });
                }
                owed.through = recorded.sequence;
                owed.terminal = job.status.is_terminal();
            }
        }
    }

    /// POSTs one event; `Err` says why it did not go through.
    async fn post(&self, delivery: &Delivery, pending: &Pending) -> Result<(), String> {
        // The operator's default endpoint is trusted; a job's own endpoint is
        // checked again, as the allowlist may have changed since CreateJob.
        let url = if delivery.operator {
            url::Url::parse(&delivery.endpoint_url)
                .map_err(|_| "the endpoint is not a URL".to_owned())?
        } else {
            check_endpoint(&delivery.endpoint_url, &self.allowlist)
                .map_err(|problem| format!("the endpoint {problem}"))?
        };
        let sent = self
            .http
            .post(url)
            .timeout(self.config.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", pending.id.to_string())
            .header("X-Batchops-Position", pending.position.to_string())
            .body(pending.event.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "the endpoint replied HTTP {}",
                response.status().as_u16()
            )),
            Err(error) if error.is_timeout() => Err(format!(
                "the endpoint did not answer within {} ms",
                self.config.timeout.as_millis()
            )),
            Err(error) => Err(format!(
                "the endpoint could not be reached: {}",
                without_url(&error)
            )),
        }
    }
}

/// Applies `recorded` to the folded job; for a status change (or the
/// creation) returns the status it came from (`None` at creation) and the
/// reason a caller gave for it.
fn fold(
    job: &mut Option<Job>,
    recorded: &RecordedEvent,
) -> Option<(Option<JobStatus>, Option<String>)> {
    match (&recorded.event, job.as_mut()) {
        (LoggedEvent::Created(created), _) => {
            *job = Some(domain::created(
                recorded.job_id,
                created,
                recorded.recorded_at,
            ));
            Some((None, None))
        }
        (LoggedEvent::Changed(event), Some(state)) => {
            let previous = state.status;
            domain::apply(state, event, recorded.recorded_at);
            event.target_status()?;
            let reason = match event {
                domain::Event::JobConfirmed { reason }
                | domain::Event::CancellationRequested { reason } => reason.clone(),
                _ => None,
            };
            Some((Some(previous), reason))
        }
        (LoggedEvent::Changed(_), None) => None,
    }
}

/// The wait after `attempts` earlier failures: the base doubled per
/// failure, capped, then between half and all of it (jitter, so that many
/// jobs of one dead endpoint do not retry in step).
fn backoff(config: &WebhookConfig, attempts: u32) -> Duration {
    let doubled = config
        .retry_base
        .saturating_mul(1u32 << attempts.min(20))
        .min(config.retry_max);
    let half = doubled / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_with_jitter_up_to_the_cap() {
        let config = WebhookConfig {
            region: "us-east-1".into(),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(100),
            concurrency: 8,
        };
        for (attempts, full) in [(0u32, 1u64), (1, 2), (3, 8), (8, 256), (9, 300), (40, 300)] {
            let wait = backoff(&config, attempts);
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
    }
}
