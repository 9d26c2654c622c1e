//! One WatchJobs stream: catch up from the log after the client's position,
//! say `caught_up`, then follow live. Every message carries its log position.
//!
//! The stream is the response body itself: it does its work only when the
//! HTTP/2 connection asks it for the next message, so there is no task and
//! no channel per stream between the process's event tail and the socket.
//! It never buffers without bound: it reads a page of the log only when the
//! client has taken the previous messages, so a slow client simply stays
//! behind in the log and catches up later.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tonic::Status;

use super::ApiError;
use crate::contract::{self, HistoryFolder};
use crate::domain::{AccountId, JobId};
use crate::notify::{EventBatch, Notice, Notifier, folder_for};
use crate::proto as pb;
use crate::store::{JobCache, Store, jobs};

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
}

impl WatchRequest {
    fn watches_job(&self, job_id: JobId) -> bool {
        self.job_ids.is_empty() || self.job_ids.contains(&job_id)
    }

    fn wants(&self, account: &AccountId, job_id: JobId) -> bool {
        *account == self.account && self.watches_job(job_id)
    }

    /// Whether a job's progress may concern this stream: another account's
    /// is not even read. (A notice without an account, from a process of an
    /// earlier version, is checked by the read.)
    fn may_want_progress(&self, account: Option<&AccountId>, job_id: JobId) -> bool {
        account.is_none_or(|account| *account == self.account) && self.watches_job(job_id)
    }
}

/// One stream's messages, ended by an error or by the server's shutdown.
///
/// Following live costs no await and no allocation per message: a batch
/// from the tail becomes messages in the outbox, which the connection takes
/// one by one. Only reads of the database run as a future, which holds the
/// stream's state until it is done.
pub struct WatchStream<G> {
    /// The stream's state; inside `work` while a read runs.
    core: Option<Box<Core>>,
    /// A read of the database in flight.
    work: Option<Read>,
    notices: BroadcastStream<Notice>,
    /// The process's tail is gone: the timer reads the log instead.
    notices_closed: bool,
    /// Ended by an error or by the server's shutdown, which the notifier
    /// tells every stream ([`Notice::Stopping`]).
    ended: bool,
    /// The stream's permit and metric, released with it.
    _guard: G,
}

/// A read of the database, which hands the core back with its outcome.
type Read = BoxFuture<'static, (Box<Core>, Result<(), ApiError>)>;

/// What a stream knows and has ready for its client.
struct Core {
    store: Store,
    seen_jobs: Arc<JobCache>,
    request: WatchRequest,
    /// The log position the client has; `None` until the first read.
    cursor: Option<i64>,
    /// This stream's fold of the jobs it met mid-log.
    folders: HashMap<JobId, HistoryFolder>,
    caught_up: bool,
    need_read: bool,
    /// Jobs whose progress waits for its throttle.
    pending_progress: HashSet<JobId>,
    progress_sent: HashMap<JobId, Instant>,
    /// Messages ready for the client, at most a page of the log; a live
    /// event's shares the tail's encoding with every other stream.
    outbox: VecDeque<pb::Frame>,
    /// Wakes the stream for a heartbeat or for throttled progress. It moves
    /// only when it fires or must fire sooner, not per message.
    timer: Pin<Box<Sleep>>,
    /// When the client was last given a message.
    last_sent: Instant,
}

impl<G> WatchStream<G> {
    /// A stream subscribed to `notifier` now, so that nothing committed
    /// after this call is missed; one made while the server stops is over.
    pub fn new(
        store: Store,
        notifier: &Notifier,
        seen_jobs: Arc<JobCache>,
        request: WatchRequest,
        guard: G,
    ) -> WatchStream<G> {
        let notices = BroadcastStream::new(notifier.subscribe());
        WatchStream {
            notices,
            notices_closed: false,
            ended: notifier.is_stopping(),
            work: None,
            core: Some(Box::new(Core {
                timer: Box::pin(tokio::time::sleep(request.heartbeat)),
                last_sent: Instant::now(),
                store,
                seen_jobs,
                request,
                cursor: None,
                folders: HashMap::new(),
                caught_up: false,
                need_read: true,
                pending_progress: HashSet::new(),
                progress_sent: HashMap::new(),
                outbox: VecDeque::new(),
            })),
            _guard: guard,
        }
    }
}

impl<G: Unpin> Stream for WatchStream<G> {
    type Item = Result<pb::Frame, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(work) = &mut this.work {
                let (core, outcome) = ready!(work.as_mut().poll(cx));
                this.work = None;
                this.core = Some(core);
                if let Err(error) = outcome {
                    // The error is the stream's last message.
                    this.ended = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
            let Some(core) = this.core.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(message) = core.outbox.pop_front() {
                core.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(message)));
            }
            if core.needs_database() {
                if let Some(core) = this.core.take() {
                    this.work = Some(Box::pin(core.read()));
                }
                continue;
            }
            if !core.caught_up {
                core.caught_up = true;
                core.push(pb::watch_jobs_response::Message::CaughtUp(pb::CaughtUp {}));
                continue;
            }
            if !this.notices_closed {
                match this.notices.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(Notice::Stopping))) => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(notice)) => {
                        core.take(notice);
                        continue;
                    }
                    Poll::Ready(None) => this.notices_closed = true,
                    Poll::Pending => {}
                }
            }
            if core.timer.as_mut().poll(cx).is_ready() {
                core.on_timer(this.notices_closed);
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Core {
    /// Whether the next messages must come from the database.
    fn needs_database(&self) -> bool {
        self.cursor.is_none() || self.need_read || (self.caught_up && self.progress_is_due())
    }

    /// Reads what [`Core::needs_database`] asked for, handing the core back.
    async fn read(mut self: Box<Self>) -> (Box<Core>, Result<(), ApiError>) {
        let outcome = self.read_in_place().await;
        (self, outcome)
    }

    async fn read_in_place(&mut self) -> Result<(), ApiError> {
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => {
                // A pooled connection per read, returned before waiting or
                // sending, so thousands of watchers share a few.
                let start = match self.request.after {
                    Some(position) => position,
                    None => jobs::last_position(&self.store.client().await?).await?,
                };
                self.cursor = Some(start);
                start
            }
        };
        if self.need_read {
            self.read_page(cursor).await
        } else {
            self.push_due_progress().await
        }
    }

    /// The next page of the watched events after `cursor`.
    async fn read_page(&mut self, mut cursor: i64) -> Result<(), ApiError> {
        let page = {
            let client = self.store.client().await?;
            jobs::account_events_after(
                &client,
                &self.request.account,
                &self.request.job_ids,
                cursor,
                PAGE,
            )
            .await?
        };
        for recorded in &page {
            // A job first seen mid-log is folded up to this event, so that
            // its status changes can name the status they came from.
            let folder = folder_for(&self.store, &mut self.folders, recorded).await?;
            let event = folder.convert(recorded);
            cursor = recorded.position;
            self.push_at(cursor, pb::watch_jobs_response::Message::Event(event));
        }
        self.cursor = Some(cursor);
        self.need_read = page.len() == PAGE;
        Ok(())
    }

    fn take(&mut self, notice: Result<Notice, BroadcastStreamRecvError>) {
        match notice {
            Ok(Notice::Progress(id, account)) => {
                if self.request.may_want_progress(account.as_ref(), id) {
                    self.pending_progress.insert(id);
                    let due = self.progress_due(id).unwrap_or_else(Instant::now);
                    if due < self.timer.deadline() {
                        self.timer.as_mut().reset(due);
                    }
                }
            }
            // The process's tail read these events once for every stream;
            // one that joins where this stream is needs no read.
            Ok(Notice::Events(batch)) if self.cursor.is_some_and(|at| batch.after <= at) => {
                self.take_batch(&batch);
            }
            // A batch beyond this stream's position, or missed batches: the
            // log has what came between. (A lagging receiver still gets
            // the last notice, so it learns of a shutdown.)
            Ok(Notice::Events(_)) | Err(BroadcastStreamRecvError::Lagged(_)) => {
                self.need_read = true;
            }
            // Handled by the stream itself.
            Ok(Notice::Stopping) => {}
        }
    }

    fn take_batch(&mut self, batch: &EventBatch) {
        let Some(mut cursor) = self.cursor else {
            return;
        };
        for tailed in &batch.events {
            if tailed.position <= cursor || !self.request.wants(&tailed.account, tailed.job_id) {
                continue;
            }
            // This stream's own fold of the job is now behind.
            if !self.folders.is_empty() {
                self.folders.remove(&tailed.job_id);
            }
            cursor = tailed.position;
            self.outbox.push_back(tailed.frame.clone());
        }
        self.cursor = Some(cursor.max(batch.until));
    }

    /// A heartbeat when the client heard nothing for a heartbeat period;
    /// then the timer waits for the next heartbeat or throttled progress.
    /// Without the process's tail, every tick reads the log.
    fn on_timer(&mut self, notices_closed: bool) {
        let now = Instant::now();
        let mut heartbeat_at = self.last_sent + self.request.heartbeat;
        // No progress is due when the timer fires (that would have been a
        // read), so pending progress never holds a heartbeat back.
        if heartbeat_at <= now {
            self.push(pb::watch_jobs_response::Message::Heartbeat(
                pb::Heartbeat {},
            ));
            heartbeat_at = now + self.request.heartbeat;
        }
        self.need_read |= notices_closed;
        let next = self
            .pending_progress
            .iter()
            .map(|id| self.progress_due(*id).unwrap_or(now))
            .fold(heartbeat_at, Instant::min);
        self.timer
            .as_mut()
            .reset(next.max(now + Duration::from_millis(1)));
    }

    /// When the job's progress may be sent again; `None`: at once.
    fn progress_due(&self, id: JobId) -> Option<Instant> {
        self.progress_sent.get(&id).map(|at| *at + PROGRESS_EVERY)
    }

    fn progress_is_due(&self) -> bool {
        let now = Instant::now();
        self.pending_progress
            .iter()
            .any(|id| self.progress_due(*id).is_none_or(|at| at <= now))
    }

    /// Progress whose throttle has passed, read once per job.
    async fn push_due_progress(&mut self) -> Result<(), ApiError> {
        let now = Instant::now();
        let due: Vec<JobId> = self
            .pending_progress
            .iter()
            .filter(|id| self.progress_due(**id).is_none_or(|at| at <= now))
            .copied()
            .collect();
        // Jobs past their throttle need no entry.
        self.progress_sent
            .retain(|_, at| now.duration_since(*at) < PROGRESS_EVERY);
        for id in due {
            self.pending_progress.remove(&id);
            self.progress_sent.insert(id, now);
            if let Some(progress) =
                progress_of(&self.store, &self.seen_jobs, &self.request, id).await?
            {
                self.push(pb::watch_jobs_response::Message::Progress(progress));
            }
        }
        Ok(())
    }

    /// Queues one message at the stream's position.
    fn push(&mut self, message: pb::watch_jobs_response::Message) {
        self.push_at(self.cursor.unwrap_or_default(), message);
    }

    /// Queues one message at `position`, encoded.
    fn push_at(&mut self, position: i64, message: pb::watch_jobs_response::Message) {
        self.outbox
            .push_back(pb::Frame::encode(&pb::WatchJobsResponse {
                position,
                message: Some(message),
            }));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(account: &str, job_ids: Vec<JobId>) -> WatchRequest {
        WatchRequest {
            account: AccountId(account.into()),
            job_ids,
            after: None,
            heartbeat: Duration::from_secs(1),
        }
    }

    /// Another account's progress is not even read; a notice without an
    /// account (from an earlier version's process) is left to the read's
    /// account check; a stream of some jobs wants only theirs.
    #[test]
    fn a_stream_reads_progress_only_of_its_own_accounts_jobs() {
        let (mine, theirs) = (
            AccountId("111122223333".into()),
            AccountId("444455556666".into()),
        );
        let (job, other_job) = (JobId(uuid::Uuid::now_v7()), JobId(uuid::Uuid::now_v7()));
        let all = request("111122223333", vec![]);
        assert!(all.may_want_progress(Some(&mine), job));
        assert!(!all.may_want_progress(Some(&theirs), job));
        assert!(all.may_want_progress(None, job));
        let some = request("111122223333", vec![job]);
        assert!(some.may_want_progress(Some(&mine), job));
        assert!(!some.may_want_progress(Some(&mine), other_job));
        assert!(!some.may_want_progress(Some(&theirs), job));
    }
}
