//! Live notifications. One LISTEN connection per process turns PostgreSQL
//! NOTIFYs into wake-ups; a NOTIFY is only a hint, the log is the truth. On
//! each events NOTIFY one tail reader reads the new log events once and
//! broadcasts them over a bounded channel, so a thousand watch streams (see
//! [`crate::api::watch`]) cost one query; a stream that lagged, or whose position is not
//! where a batch starts, reads the log itself. The tail also reads every
//! second, so a lost notification only delays the streams.

pub(crate) mod webhooks;

use std::collections::{HashMap, hash_map::Entry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::contract::HistoryFolder;
use crate::domain::{AccountId, JobId};
use crate::proto as pb;
use crate::store::{
    EVENTS_CHANNEL, PROGRESS_CHANNEL, RecordedEvent, Store, jobs, parse_progress_payload,
};

/// What a notification says happened.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Job events were committed; the process's tail read them once for
    /// every stream.
    Events(Arc<EventBatch>),
    /// A job's task counts changed; the job's account, unless an earlier
    /// version's process sent the notice.
    Progress(JobId, Option<AccountId>),
    /// The server is stopping: watch streams end (see
    /// [`Notifier::stop_watchers`]).
    Stopping,
}

/// The log's events after position `after` up to and including `until`
/// (every job's, with its account and its proto form), in log order.
#[derive(Debug)]
pub struct EventBatch {
    /// The position the batch starts after.
    pub after: i64,
    /// The position of its last event.
    pub until: i64,
    /// The events, in log order.
    pub events: Vec<TailEvent>,
}

/// One event as the tail read it.
#[derive(Debug)]
pub struct TailEvent {
    /// The account that owns the job.
    pub account: AccountId,
    /// The job.
    pub job_id: JobId,
    /// The event's log position.
    pub position: i64,
    /// Converted once for every stream.
    pub event: pb::JobEvent,
    /// Its WatchJobs message, encoded once for every stream.
    pub frame: pb::Frame,
}

/// Jobs whose folded state the tail keeps to convert their next events;
/// past this many it starts afresh (a job is then re-read once).
const TAIL_FOLDERS: usize = 1_000;

/// Events the tail reads per query.
const TAIL_PAGE: usize = 1000;

/// The process-wide fan-out of notifications.
#[derive(Clone)]
pub struct Notifier {
    sender: broadcast::Sender<Notice>,
    /// Set once [`Notifier::stop_watchers`] was called.
    stopping: Arc<AtomicBool>,
}

impl Notifier {
    /// Starts listening until `shutdown`, reconnecting after failures.
    pub fn start(store: Store, shutdown: CancellationToken) -> Notifier {
        let (sender, _) = broadcast::channel(1024);
        let notifier = Notifier {
            sender,
            stopping: Arc::default(),
        };
        let forward = notifier.sender.clone();
        let events_committed = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(tail(
            store.clone(),
            notifier.sender.clone(),
            events_committed.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(async move {
            loop {
                let listening =
                    store.listen(&[EVENTS_CHANNEL, PROGRESS_CHANNEL], |channel, payload| {
                        if channel == PROGRESS_CHANNEL {
                            if let Some((id, account)) = parse_progress_payload(payload) {
                                // No subscriber is fine; a lagging one re-reads the log.
                                let _ = forward.send(Notice::Progress(id, account));
                            }
                        } else {
                            events_committed.notify_one();
                        }
                    });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    outcome = listening => {
                        warn!(error = ?outcome.err(), "notification listener stopped; reconnecting");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        notifier
    }

    /// A receiver of every notice from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }

    /// Tells every watch stream that the server is stopping, so that a
    /// graceful shutdown need not wait for them. A stream learns it from its
    /// receiver, which it polls anyway: it needs no shutdown future of its
    /// own, whose every poll would take a lock all streams share.
    pub fn stop_watchers(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.sender.send(Notice::Stopping);
    }

    /// Whether [`Notifier::stop_watchers`] was called: a stream that
    /// subscribed after it ends at once.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Reads the log once for the whole process whenever events are committed
/// (and every second, in case a notification was lost) and broadcasts what
/// it read, so that a change reaches a thousand watchers with one query.
async fn tail(
    store: Store,
    sender: broadcast::Sender<Notice>,
    committed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut position = None;
    let mut folders = HashMap::new();
    if let Ok(client) = store.client().await {
        position = jobs::last_position(&client).await.ok();
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = committed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(error) = read_tail(&store, &sender, &mut position, &mut folders).await {
            warn!(%error, "reading new log events failed; retrying");
        }
    }
}

async fn read_tail(
    store: &Store,
    sender: &broadcast::Sender<Notice>,
    position: &mut Option<i64>,
    folders: &mut HashMap<JobId, HistoryFolder>,
) -> Result<(), crate::store::StoreError> {
    let client = store.client().await?;
    let mut after = match *position {
        Some(after) => after,
        None => {
            // Not known yet: what was committed before is left to the
            // streams, which this empty batch sends to the log.
            let last = jobs::last_position(&client).await?;
            *position = Some(last);
            let _ = sender.send(Notice::Events(Arc::new(EventBatch {
                after: last,
                until: last,
                events: Vec::new(),
            })));
            return Ok(());
        }
    };
    loop {
        let read = jobs::all_events_after(&client, after, TAIL_PAGE).await?;
        let Some((_, last)) = read.last() else {
            return Ok(());
        };
        let until = last.position;
        let full = read.len() == TAIL_PAGE;
        if folders.len() > TAIL_FOLDERS {
            folders.clear();
        }
        let mut events = Vec::with_capacity(read.len());
        for (account, recorded) in read {
            let folder = folder_for(store, folders, &recorded).await?;
            let event = folder.convert(&recorded);
            // A finished job's folder is not kept: memory stays flat however
            // many jobs pass (an event after the end re-reads the job).
            if folder.is_finished() {
                folders.remove(&recorded.job_id);
            }
            let frame = pb::Frame::encode(&pb::WatchJobsResponse {
                position: recorded.position,
                message: Some(pb::watch_jobs_response::Message::Event(event.clone())),
            });
            events.push(TailEvent {
                account,
                job_id: recorded.job_id,
                position: recorded.position,
                event,
                frame,
            });
        }
        let _ = sender.send(Notice::Events(Arc::new(EventBatch {
            after,
            until,
            events,
        })));
        after = until;
        *position = Some(until);
        if !full {
            return Ok(());
        }
    }
}

/// The folder of `recorded`'s job in `folders`; a job first seen here is
/// folded from the log up to the event before `recorded`, so that its
/// status changes can name the status they came from.
pub(crate) async fn folder_for<'a>(
    store: &Store,
    folders: &'a mut HashMap<JobId, HistoryFolder>,
    recorded: &RecordedEvent,
) -> Result<&'a mut HistoryFolder, crate::store::StoreError> {
    Ok(match folders.entry(recorded.job_id) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(slot) => {
            let mut folder = HistoryFolder::new();
            let before = recorded.sequence.saturating_sub(1) as usize;
            if before > 0 {
                let client = store.client().await?;
                for event in &jobs::events_after(&client, recorded.job_id, 0, before).await? {
                    folder.convert(event);
                }
            }
            slot.insert(folder)
        }
    })
}
