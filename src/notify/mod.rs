//! Live notifications. One LISTEN connection per process turns PostgreSQL
//! NOTIFYs into wake-ups fanned out over a bounded broadcast channel; a
//! NOTIFY is only a hint, the log is the truth. Watch streams (see
//! [`watch`]) read the log after their position whenever they are woken, and
//! also on a timer, so a lost notification only delays them.

pub mod watch;

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::domain::JobId;
use crate::store::{EVENTS_CHANNEL, PROGRESS_CHANNEL, Store};

/// What a notification says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Job events were committed.
    Events,
    /// A job's task counts changed.
    Progress(JobId),
}

/// The process-wide fan-out of notifications.
#[derive(Clone)]
pub struct Notifier {
    sender: broadcast::Sender<Notice>,
}

impl Notifier {
    /// Starts listening until `shutdown`, reconnecting after failures.
    pub fn start(store: Store, shutdown: CancellationToken) -> Notifier {
        let (sender, _) = broadcast::channel(1024);
        let notifier = Notifier { sender };
        let forward = notifier.sender.clone();
        tokio::spawn(async move {
            loop {
                let listening =
                    store.listen(&[EVENTS_CHANNEL, PROGRESS_CHANNEL], |channel, payload| {
                        let notice = if channel == PROGRESS_CHANNEL {
                            match uuid::Uuid::parse_str(payload) {
                                Ok(id) => Notice::Progress(JobId(id)),
                                Err(_) => return,
                            }
                        } else {
                            Notice::Events
                        };
                        // No subscriber is fine; a lagging one just re-reads the log.
                        let _ = forward.send(notice);
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
}
