//! One WatchJobs stream: catch up from the log after the client's position,
//! say `caught_up`, then follow live. Every message carries its log position.
//! The stream never buffers without bound: it reads a page of the log only
//! when the client has taken the previous messages, so a slow client simply
//! stays behind in the log and catches up later.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::ApiError;
use crate::contract::{self, HistoryFolder};
use crate::domain::{AccountId, JobId};
use crate::notify::{Notice, Notifier, folder_for};
use crate::proto as pb;
use crate::store::{JobCache, RecordedEvent, Store, jobs};

/// Log events read per page.
const PAGE: usize = 500;
/// Progress of one job is sent at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a client asked to watch.
pub struct WatchRequest {
    /// The account whose jobs are watched.
    pub account: AccountId,
    /// Only these jobs; empty for all of the account's.
    pub job_ids: Vec<JobId>,
    /// Resume after this position; `None`: from now.
    pub after: Option<i64>,
    /// How often an idle stream gets a heartbeat.
    pub heartbeat: Duration,
    /// Ends the stream when the server shuts down.
    pub stopping: CancellationToken,
}

type Sender = mpsc::Sender<Result<pb::WatchJobsResponse, Status>>;

/// Runs the stream until the client goes away.
pub async fn run(
    store: Store,
    notifier: Notifier,
    seen_jobs: &JobCache,
    request: WatchRequest,
    sender: Sender,
) {
    if let Err(error) = follow(&store, &notifier, seen_jobs, &request, &sender).await {
        let _ = sender.send(Err(error.into())).await;
    }
}

async fn follow(
    store: &Store,
    notifier: &Notifier,
    seen_jobs: &JobCache,
    request: &WatchRequest,
    sender: &Sender,
) -> Result<(), ApiError> {
    // Subscribed before the first read, so nothing committed after it is missed.
    let mut notices = notifier.subscribe();
    // Connections are taken per read and returned before waiting or
    // sending, so open streams do not hold the pool: thousands of watchers
    // share a few connections.
    let mut cursor = match request.after {
        Some(position) => position,
        None => jobs::last_position(&**store.client().await?).await?,
    };
    let mut folders: HashMap<JobId, HistoryFolder> = HashMap::new();
    let mut caught_up = false;
    let mut need_read = true;
    let mut pending_progress: HashSet<JobId> = HashSet::new();
    let mut progress_sent: HashMap<JobId, Instant> = HashMap::new();
    loop {
        if need_read {
            let page = {
                let client = store.client().await?;
                jobs::account_events_after(
                    &client,
                    &request.account,
                    &request.job_ids,
                    cursor,
                    PAGE,
                )
                .await?
            };
            for recorded in &page {
                if !emit(store, &mut folders, recorded, sender).await? {
                    return Ok(());
                }
                cursor = recorded.position;
            }
            if page.len() == PAGE {
                continue;
            }
            need_read = false;
        }
        if !caught_up {
            caught_up = true;
            if !send(
                sender,
                cursor,
                Some(pb::watch_jobs_response::Message::CaughtUp(pb::CaughtUp {})),
            )
            .await
            {
                return Ok(());
            }
        }
        // Progress that waited for its throttle.
        let due: Vec<JobId> = pending_progress
            .iter()
            .filter(|id| {
                progress_sent
                    .get(id)
                    .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
            })
            .copied()
            .collect();
        for id in due {
            pending_progress.remove(&id);
            progress_sent.insert(id, Instant::now());
            if let Some(progress) = progress_of(store, seen_jobs, request, id).await?
                && !send(
                    sender,
                    cursor,
                    Some(pb::watch_jobs_response::Message::Progress(progress)),
                )
                .await
            {
                return Ok(());
            }
        }
        let tick = if pending_progress.is_empty() {
            request.heartbeat
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice::Progress(id)) => {
                    if request.job_ids.is_empty() || request.job_ids.contains(&id) {
                        pending_progress.insert(id);
                    }
                }
                // The process's tail read these events once for every
                // stream; one that joins where this stream is needs no read.
                Ok(Notice::Events(batch)) if batch.after <= cursor => {
                    for tailed in &batch.events {
                        if tailed.position <= cursor || !request.wants(&tailed.account, tailed.job_id) {
                            continue;
                        }
                        // This stream's own fold of the job is now behind.
                        folders.remove(&tailed.job_id);
                        let event = pb::watch_jobs_response::Message::Event(tailed.event.clone());
                        if !send(sender, tailed.position, Some(event)).await {
                            return Ok(());
                        }
                        cursor = tailed.position;
                    }
                    cursor = cursor.max(batch.until);
                }
                // A batch beyond this stream's position, or missed batches:
                // the log has what came between.
                Ok(Notice::Events(_)) | Err(broadcast::error::RecvError::Lagged(_)) => need_read = true,
                Err(broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep(request.heartbeat).await;
                    need_read = true;
                }
            },
            _ = tokio::time::sleep(tick) => {
                // A lost notification needs nothing here: the tail also
                // reads the log every second.
                if pending_progress.is_empty()
                    && !send(sender, cursor, Some(pb::watch_jobs_response::Message::Heartbeat(pb::Heartbeat {}))).await
                {
                    return Ok(());
                }
            }
            _ = sender.closed() => return Ok(()),
            _ = request.stopping.cancelled() => return Ok(()),
        }
    }
}

impl WatchRequest {
    fn wants(&self, account: &AccountId, job_id: JobId) -> bool {
        *account == self.account && (self.job_ids.is_empty() || self.job_ids.contains(&job_id))
    }
}

/// Sends one logged event; false when the client went away. A job first
/// seen mid-stream is folded up to this event, so its status changes can
/// name the status they came from.
async fn emit(
    store: &Store,
    folders: &mut HashMap<JobId, HistoryFolder>,
    recorded: &RecordedEvent,
    sender: &Sender,
) -> Result<bool, ApiError> {
    let folder = folder_for(store, folders, recorded).await?;
    let event = folder.convert(recorded);
    Ok(send(
        sender,
        recorded.position,
        Some(pb::watch_jobs_response::Message::Event(event)),
    )
    .await)
}

/// The progress message of a job of the watched account, if it is one.
async fn progress_of(
    store: &Store,
    seen_jobs: &JobCache,
    request: &WatchRequest,
    id: JobId,
) -> Result<Option<pb::JobProgress>, ApiError> {
    let client = store.client().await?;
    match seen_jobs.load(&client, id, Some(&request.account)).await {
        Ok(job) => {
            let descriptor = contract::job_to_list_proto(&job, chrono::Utc::now());
            Ok(Some(pb::JobProgress {
                job_id: job.id.to_string(),
                status: descriptor.status,
                progress_summary: descriptor.progress_summary,
            }))
        }
        Err(crate::store::StoreError::NotFound(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Sends one message; false when the client went away.
async fn send(
    sender: &Sender,
    position: i64,
    message: Option<pb::watch_jobs_response::Message>,
) -> bool {
    sender
        .send(Ok(pb::WatchJobsResponse { position, message }))
        .await
        .is_ok()
}
