//! Hands out active slots: per account, the highest-priority runnable jobs
//! (ties in creation order) are Active, up to `max_active_jobs`. Decisions are
//! made under a transaction-scoped advisory lock so that several processes
//! never schedule past the limit.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Engine, Round, Wakers, run_rounds};
use crate::domain::{Command, Effect, plan_slots};
use crate::store::{StoreError, jobs, tasks};

pub(super) async fn run(engine: Engine, shutdown: CancellationToken) {
    run_rounds(
        &engine,
        "scheduler",
        &engine.wakers.scheduler,
        &shutdown,
        || async {
            schedule_once(&engine).await?;
            Ok(Round::Idle)
        },
    )
    .await;
}

async fn schedule_once(engine: &Engine) -> Result<(), StoreError> {
    let mut client = engine.store.client().await?;
    let tx = client.transaction().await?;
    tasks::take_scheduler_lock(&tx).await?;
    let candidates = tasks::slot_candidates(&tx).await?;
    let plan = plan_slots(&candidates, engine.config.max_active_jobs);
    let changed = !plan.pause.is_empty() || !plan.activate.is_empty();
    let now = Utc::now();
    let mut stopped = Vec::new();
    for (ids, command) in [
        (plan.pause, Command::Pause),
        (plan.activate, Command::Activate),
    ] {
        for id in ids {
            let job = jobs::lock(&tx, id, None).await?;
            let (job, decision) = jobs::record(&tx, job, &command, now).await?;
            if decision.effects.contains(&Effect::StopTaskStarts) {
                stopped.push(id);
            }
            info!(job_id = %id, status = %job.status, "job rescheduled");
        }
    }
    tx.commit().await?;
    // A paused job's chunks here start nothing more from now on.
    for id in stopped {
        engine.gate.stop(id);
    }
    if changed {
        Wakers::wake(&engine.wakers.workers);
        Wakers::wake(&engine.wakers.finisher);
    }
    Ok(())
}
