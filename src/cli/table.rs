//! Human-readable output: aligned tables, key/value blocks and the short
//! status names of the S3 console (`Active`, `Complete`).

use chrono::{DateTime, Utc};

use crate::proto as pb;

/// Columns padded to their widest cell; the last column is not padded.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (index, cell) in row.iter().enumerate() {
            if index == last {
                out.push_str(cell);
            } else {
                let pad = widths[index] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// `Key: value` lines with the values aligned; empty values are left out.
pub(crate) fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, _)| key.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields.iter().filter(|(_, value)| !value.is_empty()) {
        out.push_str(&format!("{key:<width$}  {value}\n"));
    }
    out
}

/// `Active` for `JOB_STATUS_ACTIVE`, the domain's name; `Unknown(99)` for a
/// value this build does not know.
pub(crate) fn status_name(value: i32) -> String {
    match crate::contract::status_name(value) {
        Some(name) => name.to_owned(),
        None => format!("Unknown({value})"),
    }
}

/// Parses `Active`, `active`, `DryRunComplete`, `dry_run_complete` or
/// `JOB_STATUS_ACTIVE`.
pub(crate) fn parse_status(name: &str) -> Result<pb::JobStatus, String> {
    let upper = name.trim().to_ascii_uppercase();
    let wanted: String = upper
        .strip_prefix("JOB_STATUS_")
        .unwrap_or(&upper)
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let statuses = (1..).map_while(|value| pb::JobStatus::try_from(value).ok());
    let mut names = Vec::new();
    for status in statuses {
        let shown = status_name(status as i32);
        if shown.to_ascii_lowercase() == wanted {
            return Ok(status);
        }
        names.push(shown);
    }
    Err(format!(
        "unknown job status {name:?} (one of {})",
        names.join(", ")
    ))
}

/// `Suspended -> Cancelling  (reason)  [Code: reason]` for a status change.
pub(crate) fn status_change(change: &pb::StatusChangedEvent) -> String {
    let mut text = format!(
        "{} -> {}",
        status_name(change.previous_status),
        status_name(change.status)
    );
    if !change.status_update_reason.is_empty() {
        text.push_str(&format!("  ({})", change.status_update_reason));
    }
    for reason in &change.failure_reasons {
        text.push_str(&format!(
            "  [{}: {}]",
            reason.failure_code, reason.failure_reason
        ));
    }
    text
}

/// A job's failure reasons and report location, as `render_fields` rows.
pub(crate) fn outcome_fields(job: &pb::JobDescriptor) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    if job.dry_run {
        fields.push(("DryRun", dry_run_outcome(job)));
    }
    fields.extend(job.failure_reasons.iter().map(|r| {
        (
            "FailureReason",
            format!("{}: {}", r.failure_code, r.failure_reason),
        )
    }));
    for code in &job.error_summaries {
        fields.push((
            "Errors",
            format!("{} ×{}", code.error_code, code.failed_tasks),
        ));
        for sample in &code.samples {
            let version = if sample.version_id.is_empty() {
                String::new()
            } else {
                format!(" ({})", sample.version_id)
            };
            let message: String = sample
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            fields.push((
                "",
                format!(
                    "  task {} {}/{}{version}: {message}",
                    sample.task_number, sample.bucket, sample.key
                ),
            ));
        }
    }
    if job.other_codes_failed_tasks > 0 {
        fields.push((
            "Errors",
            format!("other codes ×{}", job.other_codes_failed_tasks),
        ));
    }
    if let Some(location) = &job.report_location {
        fields.push((
            "Report",
            format!("{}/{}", location.bucket, location.manifest_key),
        ));
    }
    fields
}

/// `1,234 objects, 5,678 bytes (5.4 KiB): nothing ran` once a dry run has
/// counted; `counting…` before.
fn dry_run_outcome(job: &pb::JobDescriptor) -> String {
    if job.status != pb::JobStatus::DryRunComplete as i32 {
        return if is_terminal(job.status) {
            "ended before counting; nothing ran".into()
        } else {
            "counting; nothing will run".into()
        };
    }
    let summary = job.progress_summary.unwrap_or_default();
    let bytes = match summary.total_object_bytes {
        Some(bytes) => format!(", {} bytes ({})", grouped(bytes), binary_size(bytes)),
        None => ", size unknown (the manifest gives no sizes)".into(),
    };
    format!(
        "{} objects{bytes}: nothing ran",
        grouped(summary.total_number_of_tasks)
    )
}

/// `1,234,567`.
pub(crate) fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `5.4 KiB`, `1.0 GiB`, `12 B`.
pub(crate) fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A short name for an enum value: `SHA256` for `CHECKSUM_ALGORITHM_SHA256`.
pub(crate) fn enum_suffix(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

/// Whether a status is never left: Complete, Cancelled, Failed, DryRunComplete.
pub(crate) fn is_terminal(value: i32) -> bool {
    matches!(
        pb::JobStatus::try_from(value),
        Ok(pb::JobStatus::Complete
            | pb::JobStatus::Cancelled
            | pb::JobStatus::Failed
            | pb::JobStatus::DryRunComplete)
    )
}

/// RFC 3339 time in UTC to the second; empty when absent.
pub(crate) fn time(value: Option<&prost_types::Timestamp>) -> String {
    value
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `succeeded/failed/total` of a progress summary.
pub(crate) fn progress(summary: Option<&pb::JobProgressSummary>) -> String {
    let summary = summary.cloned().unwrap_or_default();
    format!(
        "{}/{}/{}",
        summary.number_of_tasks_succeeded,
        summary.number_of_tasks_failed,
        summary.total_number_of_tasks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let text = render(
            &["ID", "STATUS", "NOTE"],
            &[
                vec!["a".into(), "Active".into(), "x".into()],
                vec!["bbbb".into(), "New".into(), "".into()],
            ],
        );
        assert_eq!(
            text,
            "ID    STATUS  NOTE\na     Active  x\nbbbb  New     \n"
        );
    }

    #[test]
    fn statuses_read_and_print_like_the_s3_console() {
        assert_eq!(status_name(pb::JobStatus::Cancelled as i32), "Cancelled");
        assert_eq!(status_name(99), "Unknown(99)");
        for name in ["Ready", "ready", "JOB_STATUS_READY", " READY "] {
            assert_eq!(parse_status(name).unwrap(), pb::JobStatus::Ready);
        }
        assert!(parse_status("Unspecified").is_err());
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(123456), "123,456");
        assert_eq!(binary_size(12), "12 B");
        assert_eq!(binary_size(5 * 1024 + 512), "5.5 KiB");
        assert_eq!(binary_size(3 << 30), "3.0 GiB");
        let dry = pb::JobStatus::DryRunComplete;
        assert_eq!(status_name(dry as i32), "DryRunComplete");
        for name in [
            "DryRunComplete",
            "dry_run_complete",
            "JOB_STATUS_DRY_RUN_COMPLETE",
        ] {
            assert_eq!(parse_status(name).unwrap(), dry);
        }
        assert!(parse_status("Done").unwrap_err().contains("\"Done\""));
    }
}
