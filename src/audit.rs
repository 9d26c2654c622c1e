//! Audit replay: rebuilds every job's projection from the event log (its
//! events folded by the domain, its counters counted from the task result
//! log) and compares it with the stored `jobs` row.
//!
//! Event payloads carry a schema version. To change an event's shape, bump
//! `domain::EVENT_SCHEMA_VERSION`, keep reading the old shape in
//! `store::jobs::decode_event` (convert it to the new one there), and add a
//! test that a stored payload of the old version still replays; stored
//! events are never rewritten.

use serde_json::Value;
use uuid::Uuid;

use crate::domain::JobId;
use crate::store::{Store, StoreError, jobs};

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Jobs whose logs were replayed.
    pub jobs_checked: usize,
    /// Jobs whose stored projection differs from the replay: the differing fields.
    pub differences: Vec<(JobId, Vec<String>)>,
    /// Jobs with events but no projection row.
    pub missing_projections: Vec<JobId>,
    /// Jobs whose projection was rewritten from the log (with `repair`).
    pub repaired: usize,
}

impl ReplayReport {
    /// Whether every stored projection equals its replay.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.missing_projections.is_empty()
    }
}

/// Replays every job; with `repair`, rewrites differing projections.
pub async fn replay(store: &Store, repair: bool) -> Result<ReplayReport, StoreError> {
    const PAGE: usize = 500;
    let client = store.client().await?;
    let mut report = ReplayReport::default();
    let mut after = Uuid::nil();
    loop {
        let ids = jobs::job_ids_after(&client, after, PAGE).await?;
        for id in &ids {
            report.jobs_checked += 1;
            let stored = jobs::load(&client, *id, None).await?;
            let Some(replayed) = crate::store::replay(&client, *id).await? else {
                report.differences.push((*id, vec!["(no events)".into()]));
                continue;
            };
            if replayed == stored {
                continue;
            }
            let fields = differing_fields(
                &serde_json::to_value(&stored)?,
                &serde_json::to_value(&replayed)?,
            );
            report.differences.push((*id, fields));
            if repair {
                jobs::replace_projection(&client, &replayed).await?;
                report.repaired += 1;
            }
        }
        match ids.last() {
            Some(last) if ids.len() == PAGE => after = last.0,
            _ => break,
        }
    }
    report.missing_projections = jobs::orphan_streams(&client).await?;
    Ok(report)
}

/// The top-level fields (and `spec.*` fields) that differ.
fn differing_fields(stored: &Value, replayed: &Value) -> Vec<String> {
    let (Some(stored), Some(replayed)) = (stored.as_object(), replayed.as_object()) else {
        return vec!["(whole job)".into()];
    };
    let mut fields = Vec::new();
    for (key, value) in stored {
        let other = replayed.get(key).unwrap_or(&Value::Null);
        if value == other {
            continue;
        }
        if key == "spec" {
            fields.extend(
                differing_fields(value, other)
                    .into_iter()
                    .map(|f| format!("spec.{f}")),
            );
        } else {
            fields.push(key.clone());
        }
    }
    fields
}
