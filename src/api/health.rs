//! gRPC health: SERVING once the database is migrated and answers,
//! NOT_SERVING while it does not and from the moment shutdown begins.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::warn;

use crate::store::Store;

/// The service names health is reported for ("" is the whole server).
const SERVICES: [&str; 2] = ["", "batchops.v1.JobService"];

/// How often the database is checked.
const EVERY: Duration = Duration::from_secs(2);

/// Reports SERVING (the caller has just migrated and reached the database,
/// and accepts no connection before this returns), then keeps the status
/// current in the background until `stopping`.
pub async fn start(reporter: HealthReporter, store: Store, stopping: CancellationToken) {
    set(&reporter, ServingStatus::Serving).await;
    tokio::spawn(follow(reporter, store, stopping));
}

async fn follow(reporter: HealthReporter, store: Store, stopping: CancellationToken) {
    let mut last = Some(ServingStatus::Serving);
    loop {
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(error) => {
                if last != Some(ServingStatus::NotServing) {
                    warn!(error = %error, "database check failed; reporting NOT_SERVING");
                }
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            set(&reporter, status).await;
            last = Some(status);
        }
        tokio::select! {
            _ = stopping.cancelled() => {
                set(&reporter, ServingStatus::NotServing).await;
                return;
            }
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}
