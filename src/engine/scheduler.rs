//! Hands out active slots: per account, the highest-priority runnable jobs
//! (ties in creation order) are Active, up to `max_active_jobs`. Decisions are
//! made under a transaction-scoped advisory lock so that several processes
//! never schedule past the limit.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Engine, Round, run_rounds};
use crate::domain::{Command, JobId, JobStatus};
use crate::store::{StoreError, jobs, tasks};

/// A job competing for an active slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotCandidate {
    pub job_id: JobId,
    pub account_id: String,
    pub status: JobStatus,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
}

/// The jobs to activate now: for each account, Ready or Paused jobs in order
/// of priority (then age) while Active and Pausing jobs leave slots free.
pub fn plan_activations(candidates: &[SlotCandidate], max_active_jobs: usize) -> Vec<JobId> {
    let mut accounts: Vec<&str> = candidates.iter().map(|c| c.account_id.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut activate = Vec::new();
    for account in accounts {
        let of_account = candidates.iter().filter(|c| c.account_id == account);
        let occupied = of_account
            .clone()
            .filter(|c| matches!(c.status, JobStatus::Active | JobStatus::Pausing))
            .count();
        let mut waiting: Vec<&SlotCandidate> = of_account
            .filter(|c| matches!(c.status, JobStatus::Ready | JobStatus::Paused))
            .collect();
        waiting.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.job_id.cmp(&b.job_id))
        });
        let free = max_active_jobs.saturating_sub(occupied);
        activate.extend(waiting.into_iter().take(free).map(|c| c.job_id));
    }
    activate
}

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    run_rounds(&engine, "scheduler", &shutdown, || async {
        schedule_once(&engine).await?;
        Ok(Round::Idle)
    })
    .await;
}

async fn schedule_once(engine: &Engine) -> Result<(), StoreError> {
    let mut client = engine.store.client().await?;
    let tx = client.transaction().await?;
    tasks::take_scheduler_lock(&tx).await?;
    let candidates = tasks::slot_candidates(&tx).await?;
    let activate = plan_activations(&candidates, engine.config.max_active_jobs);
    let now = Utc::now();
    for id in activate {
        let job = jobs::lock(&tx, id, None).await?;
        let (job, _) = jobs::record(&tx, job, &Command::Activate, now).await?;
        info!(job_id = %id, status = %job.status, "job activated");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn candidate(n: u128, account: &str, status: JobStatus, priority: i32) -> SlotCandidate {
        SlotCandidate {
            job_id: JobId(uuid::Uuid::from_u128(n)),
            account_id: account.into(),
            status,
            priority,
            created_at: Utc.timestamp_opt(n as i64, 0).unwrap(),
        }
    }

    fn ids(ns: &[u128]) -> Vec<JobId> {
        ns.iter()
            .map(|n| JobId(uuid::Uuid::from_u128(*n)))
            .collect()
    }

    #[test]
    fn highest_priority_first_then_oldest() {
        let candidates = [
            candidate(1, "a", JobStatus::Ready, 1),
            candidate(2, "a", JobStatus::Ready, 5),
            candidate(3, "a", JobStatus::Ready, 5),
            candidate(4, "a", JobStatus::Ready, 9),
        ];
        assert_eq!(plan_activations(&candidates, 3), ids(&[4, 2, 3]));
    }

    #[test]
    fn active_and_pausing_jobs_hold_their_slots() {
        let candidates = [
            candidate(1, "a", JobStatus::Active, 1),
            candidate(2, "a", JobStatus::Pausing, 1),
            candidate(3, "a", JobStatus::Ready, 9),
            candidate(4, "a", JobStatus::Paused, 8),
        ];
        assert_eq!(plan_activations(&candidates, 2), vec![]);
        assert_eq!(plan_activations(&candidates, 3), ids(&[3]));
        assert_eq!(plan_activations(&candidates, 4), ids(&[3, 4]));
    }

    #[test]
    fn accounts_have_separate_slots() {
        let candidates = [
            candidate(1, "a", JobStatus::Active, 1),
            candidate(2, "a", JobStatus::Ready, 1),
            candidate(3, "b", JobStatus::Ready, 1),
        ];
        assert_eq!(plan_activations(&candidates, 1), ids(&[3]));
    }
}
