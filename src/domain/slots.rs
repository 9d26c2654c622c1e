//! Active slots: which jobs of each account hold its `max_active_jobs`
//! slots, by priority, and which must give theirs up. A pure rule, decided
//! by the scheduler under a database lock.

use chrono::{DateTime, Utc};

use super::{JobId, JobStatus};

/// A job competing for an active slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotCandidate {
    /// The job.
    pub job_id: JobId,
    /// Its account, whose slots it competes for.
    pub account_id: String,
    /// Ready, Active, Pausing or Paused.
    pub status: JobStatus,
    /// Higher runs first.
    pub priority: i32,
    /// Older first among equals.
    pub created_at: DateTime<Utc>,
}

/// What the scheduler does in one round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotPlan {
    /// Active jobs that lost their slot to a higher-priority job.
    pub pause: Vec<JobId>,
    /// Ready or Paused jobs that get a free slot now.
    pub activate: Vec<JobId>,
}

/// Per account, the jobs that should hold the `max_active_jobs` slots are the
/// highest-priority Active, Ready and Paused jobs; at equal priority an Active
/// job keeps its slot (equal priority never preempts), then older jobs win.
/// Active jobs outside that set are paused; a Pausing job keeps its slot until
/// it has drained, so the job that preempted it starts once it is Paused.
pub fn plan_slots(candidates: &[SlotCandidate], max_active_jobs: usize) -> SlotPlan {
    let mut accounts: Vec<&str> = candidates.iter().map(|c| c.account_id.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut plan = SlotPlan::default();
    for account in accounts {
        let of_account: Vec<&SlotCandidate> = candidates
            .iter()
            .filter(|c| c.account_id == account)
            .collect();
        let pausing = of_account
            .iter()
            .filter(|c| c.status == JobStatus::Pausing)
            .count();
        let mut contenders: Vec<&SlotCandidate> = of_account
            .iter()
            .copied()
            .filter(|c| {
                matches!(
                    c.status,
                    JobStatus::Active | JobStatus::Ready | JobStatus::Paused
                )
            })
            .collect();
        contenders.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then((b.status == JobStatus::Active).cmp(&(a.status == JobStatus::Active)))
                .then(a.created_at.cmp(&b.created_at))
                .then(a.job_id.cmp(&b.job_id))
        });
        let (winners, losers) = contenders.split_at(max_active_jobs.min(contenders.len()));
        plan.pause.extend(
            losers
                .iter()
                .filter(|c| c.status == JobStatus::Active)
                .map(|c| c.job_id),
        );
        let keeping = winners
            .iter()
            .filter(|c| c.status == JobStatus::Active)
            .count();
        let paused_now = losers
            .iter()
            .filter(|c| c.status == JobStatus::Active)
            .count();
        let occupied = keeping + paused_now + pausing;
        let free = max_active_jobs.saturating_sub(occupied);
        plan.activate.extend(
            winners
                .iter()
                .filter(|c| c.status != JobStatus::Active)
                .take(free)
                .map(|c| c.job_id),
        );
    }
    plan
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

    fn plan(candidates: &[SlotCandidate], slots: usize) -> (Vec<JobId>, Vec<JobId>) {
        let plan = plan_slots(candidates, slots);
        (plan.pause, plan.activate)
    }

    use JobStatus::*;

    #[test]
    fn highest_priority_first_then_oldest() {
        let candidates = [
            candidate(1, "a", Ready, 1),
            candidate(2, "a", Ready, 5),
            candidate(3, "a", Ready, 5),
            candidate(4, "a", Ready, 9),
        ];
        assert_eq!(plan(&candidates, 3), (vec![], ids(&[4, 2, 3])));
    }

    #[test]
    fn active_and_pausing_jobs_hold_their_slots() {
        let candidates = [
            candidate(1, "a", Active, 9),
            candidate(2, "a", Pausing, 1),
            candidate(3, "a", Ready, 8),
            candidate(4, "a", Paused, 7),
        ];
        assert_eq!(plan(&candidates, 2), (vec![], vec![]));
        assert_eq!(plan(&candidates, 3), (vec![], ids(&[3])));
        assert_eq!(plan(&candidates, 4), (vec![], ids(&[3, 4])));
    }

    #[test]
    fn a_higher_priority_job_pauses_the_lowest_active_job() {
        let candidates = [
            candidate(1, "a", Active, 5),
            candidate(2, "a", Active, 1),
            candidate(3, "a", Ready, 3),
        ];
        // Job 3 waits for job 2 to drain before it starts.
        assert_eq!(plan(&candidates, 2), (ids(&[2]), vec![]));
        let drained = [
            candidate(1, "a", Active, 5),
            candidate(2, "a", Paused, 1),
            candidate(3, "a", Ready, 3),
        ];
        assert_eq!(plan(&drained, 2), (vec![], ids(&[3])));
        let still_draining = [
            candidate(1, "a", Active, 5),
            candidate(2, "a", Pausing, 1),
            candidate(3, "a", Ready, 3),
        ];
        assert_eq!(plan(&still_draining, 2), (vec![], vec![]));
    }

    #[test]
    fn equal_priority_never_preempts() {
        let candidates = [candidate(5, "a", Active, 4), candidate(1, "a", Ready, 4)];
        assert_eq!(plan(&candidates, 1), (vec![], vec![]));
    }

    #[test]
    fn a_paused_job_resumes_when_it_is_again_among_the_top() {
        let candidates = [candidate(1, "a", Paused, 1), candidate(2, "a", Ready, 0)];
        assert_eq!(plan(&candidates, 1), (vec![], ids(&[1])));
        // A priority change puts the paused job above the running one.
        let raised = [candidate(1, "a", Paused, 9), candidate(2, "a", Active, 5)];
        assert_eq!(plan(&raised, 1), (ids(&[2]), vec![]));
    }

    #[test]
    fn accounts_have_separate_slots() {
        let candidates = [
            candidate(1, "a", Active, 1),
            candidate(2, "a", Ready, 1),
            candidate(3, "b", Ready, 1),
            candidate(4, "b", Ready, 0),
        ];
        assert_eq!(plan(&candidates, 1), (vec![], ids(&[3])));
    }

    #[test]
    fn planned_slots_never_exceed_the_limit() {
        // Every combination of statuses and priorities over four jobs.
        let statuses = [Active, Pausing, Ready, Paused];
        for code in 0..(4u32.pow(4) * 3u32.pow(4)) {
            let mut rest = code;
            let candidates: Vec<SlotCandidate> = (0..4)
                .map(|n| {
                    let status = statuses[(rest % 4) as usize];
                    rest /= 4;
                    let priority = (rest % 3) as i32;
                    rest /= 3;
                    candidate(n + 1, "a", status, priority)
                })
                .collect();
            for slots in 0..4 {
                let plan = plan_slots(&candidates, slots);
                let holding = candidates
                    .iter()
                    .filter(|c| matches!(c.status, Active | Pausing))
                    .count();
                let after = holding + plan.activate.len();
                assert!(
                    plan.activate.is_empty() || after <= slots,
                    "{candidates:?} with {slots} slots: {plan:?}"
                );
                for id in &plan.pause {
                    let paused = candidates.iter().find(|c| c.job_id == *id).unwrap();
                    assert_eq!(paused.status, Active);
                    // Only a strictly higher-priority job preempts, unless the
                    // account holds more slots than it may (the limit was lowered).
                    let outranked = candidates.iter().any(|c| {
                        matches!(c.status, Ready | Paused) && c.priority > paused.priority
                    });
                    let active = candidates.iter().filter(|c| c.status == Active).count();
                    assert!(
                        outranked || active > slots,
                        "{candidates:?} with {slots} slots: {plan:?}"
                    );
                }
            }
        }
    }
}
