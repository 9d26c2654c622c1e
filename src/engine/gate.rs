//! The task gate of one process: the chunks of each job that run here, and
//! the switch that stops them starting tasks.
//!
//! A job that leaves Active must start no new task. Within the process, the
//! command that took it out of Active stops its chunks here before it
//! returns (the decision's `StopTaskStarts` effect); other processes learn
//! it from the status change their notification tail reads, and every chunk
//! also checks the job's status now and then, as the fallback. A chunk
//! registers here right after its claim and then checks the status once, so
//! a stop that committed between the claim and the registration is seen too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::domain::JobId;
use crate::notify::{Notice, Notifier};
use crate::proto as pb;

/// The chunks running in this process, by job.
#[derive(Debug, Default)]
pub struct TaskGate {
    chunks: Mutex<HashMap<JobId, Vec<Weak<AtomicBool>>>>,
}

/// One chunk's run: whether its job may still start tasks.
#[derive(Debug, Clone)]
pub struct ChunkRun {
    stopped: Arc<AtomicBool>,
}

impl ChunkRun {
    /// Whether no task of the chunk may start any more.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Stops the chunk's task starts.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

impl TaskGate {
    /// Registers a chunk of `job` about to run here.
    pub fn open(&self, job: JobId) -> ChunkRun {
        let run = ChunkRun {
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let of_job = chunks.entry(job).or_default();
        of_job.retain(|chunk| chunk.strong_count() > 0);
        of_job.push(Arc::downgrade(&run.stopped));
        run
    }

    /// Stops every chunk of `job` running here from starting tasks; tasks
    /// already started finish.
    pub fn stop(&self, job: JobId) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(of_job) = chunks.remove(&job) {
            for chunk in of_job.iter().filter_map(Weak::upgrade) {
                chunk.store(true, Ordering::SeqCst);
            }
        }
    }

    /// How many jobs have chunks registered (for tests of the bookkeeping).
    pub fn jobs(&self) -> usize {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.retain(|_, of_job| of_job.iter().any(|c| c.strong_count() > 0));
        chunks.len()
    }
}

/// Stops the chunks of jobs that another process took out of Active, as the
/// notification tail reads their status changes, until `shutdown`.
pub(super) async fn follow_status_changes(
    gate: Arc<TaskGate>,
    notifier: Notifier,
    shutdown: CancellationToken,
) {
    let mut notices = notifier.subscribe();
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => return,
            notice = notices.recv() => notice,
        };
        match notice {
            Ok(Notice::Events(batch)) => {
                for event in &batch.events {
                    if left_active(&event.event) {
                        gate.stop(event.job_id);
                    }
                }
            }
            Ok(Notice::Progress(..) | Notice::Stopping) => {}
            // Missed notices are left to the chunks' own status checks.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Whether the event took its job out of Active.
fn left_active(event: &pb::JobEvent) -> bool {
    matches!(
        &event.event,
        Some(pb::job_event::Event::StatusChanged(change))
            if change.previous_status == pb::JobStatus::Active as i32
                && change.status != pb::JobStatus::Active as i32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reaches_every_chunk_of_the_job_and_no_other() {
        let gate = TaskGate::default();
        let (a, b) = (
            JobId(uuid::Uuid::from_u128(1)),
            JobId(uuid::Uuid::from_u128(2)),
        );
        let (a1, a2, b1) = (gate.open(a), gate.open(a), gate.open(b));
        gate.stop(a);
        assert!(a1.is_stopped() && a2.is_stopped());
        assert!(!b1.is_stopped());
        // A chunk registered after the stop runs until its own check.
        assert!(!gate.open(a).is_stopped());
    }

    #[test]
    fn finished_chunks_are_forgotten() {
        let gate = TaskGate::default();
        let job = JobId(uuid::Uuid::from_u128(1));
        let run = gate.open(job);
        assert_eq!(gate.jobs(), 1);
        drop(run);
        assert_eq!(gate.jobs(), 0);
    }
}
