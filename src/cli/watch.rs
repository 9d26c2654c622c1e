//! `batchops watch`: follows one job from its first event to its end, with
//! a live progress bar (rate and ETA) on a terminal and one line per update
//! otherwise.
//!
//! It subscribes to `WatchJobs` for the job from log position 0, so it
//! prints the job's status path so far and then every later change, with no
//! gap between "what happened" and "what happens".

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{CliError, Client, Output, json, table};
use crate::proto as pb;
use crate::proto::watch_jobs_response::Message;

/// How far back the rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What `watch` ended with.
pub(crate) enum Ending {
    Complete,
    /// Failed or Cancelled.
    Unsuccessful,
}

/// Follows `job_id` until it is Complete, Failed, Cancelled or (a dry run)
/// DryRunComplete.
pub(crate) async fn run(
    client: &mut Client,
    output: Output,
    job_id: &str,
) -> Result<Ending, CliError> {
    let job = client.describe(job_id).await?;
    let mut state = State::new(&job);
    let request = pb::WatchJobsRequest {
        account_id: client.account_id.clone(),
        job_ids: vec![job_id.to_owned()],
        after_position: Some(0),
    };
    let mut stream = client.jobs.watch_jobs(request).await?.into_inner();
    let terminal = std::io::stderr().is_terminal() && output == Output::Table;
    while let Some(message) = stream.next().await {
        let message = message?;
        if output == Output::Json {
            super::print_json(&json::to_value(&message))?;
        }
        match message.message {
            Some(Message::Event(event)) => {
                if let Some(line) = state.apply_event(&event)
                    && output == Output::Table
                {
                    if terminal {
                        eprint!("\r\x1b[2K");
                    }
                    super::print_text(&format!("{line}\n"))?;
                }
            }
            Some(Message::Progress(progress)) => {
                state.apply_progress(&progress, Instant::now());
                if output == Output::Table && !terminal {
                    super::print_text(&format!("{}\n", state.progress_line(None)))?;
                }
            }
            Some(Message::CaughtUp(_)) => state.caught_up = true,
            Some(Message::Heartbeat(_)) | None => {}
        }
        if terminal {
            let width = 30;
            eprint!("\r\x1b[2K{}", state.progress_line(Some(width)));
            let _ = std::io::stderr().flush();
        }
        if let Some(ending) = state.ending() {
            if terminal {
                eprintln!();
            }
            if output == Output::Table {
                let job = client.describe(job_id).await?;
                super::print_text(&summary(&job))?;
            }
            return Ok(ending);
        }
    }
    Err(CliError::Stream(
        "the server ended the watch stream before the job ended".into(),
    ))
}

/// What the watcher knows of the job.
struct State {
    status: pb::JobStatus,
    total: u64,
    succeeded: u64,
    failed: u64,
    /// (when, tasks finished) samples for the rate.
    samples: VecDeque<(Instant, u64)>,
    /// Whether the log has been replayed up to now; until then the status
    /// is that of the replayed events, which may lag the job's.
    caught_up: bool,
}

impl State {
    fn new(job: &pb::JobDescriptor) -> State {
        let summary = job.progress_summary.unwrap_or_default();
        State {
            status: job.status(),
            total: summary.total_number_of_tasks,
            succeeded: summary.number_of_tasks_succeeded,
            failed: summary.number_of_tasks_failed,
            samples: VecDeque::new(),
            caught_up: false,
        }
    }

    /// Applies a logged event; returns the line to print for a status
    /// change.
    fn apply_event(&mut self, event: &pb::JobEvent) -> Option<String> {
        use pb::job_event::Event;
        let time = table::time(event.event_time.as_ref());
        match event.event.as_ref()? {
            Event::JobCreated(_) => Some(format!("{time}  created")),
            Event::StatusChanged(change) => {
                self.status = change.status();
                if let Some(total) = change.total_number_of_tasks {
                    self.total = total;
                }
                Some(format!("{time}  {}", table::status_change(change)))
            }
            Event::ReportWritten(written) => written
                .location
                .as_ref()
                .map(|l| format!("{time}  report written to {}/{}", l.bucket, l.manifest_key)),
            Event::ReportFailed(failed) => failed.failure_reason.as_ref().map(|reason| {
                format!(
                    "{time}  report failed: {}: {}",
                    reason.failure_code, reason.failure_reason
                )
            }),
            Event::PriorityChanged(change) => Some(format!(
                "{time}  priority {} -> {}",
                change.previous_priority, change.priority
            )),
            Event::TagsChanged(_) => None,
        }
    }

    fn apply_progress(&mut self, progress: &pb::JobProgress, now: Instant) {
        if let Some(summary) = &progress.progress_summary {
            self.total = summary.total_number_of_tasks;
            self.succeeded = summary.number_of_tasks_succeeded;
            self.failed = summary.number_of_tasks_failed;
        }
        self.samples.push_back((now, self.succeeded + self.failed));
        while self
            .samples
            .front()
            .is_some_and(|(when, _)| now.duration_since(*when) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Tasks finished per second over the recent samples.
    fn rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        (seconds > 0.0 && last.1 >= first.1).then(|| (last.1 - first.1) as f64 / seconds)
    }

    fn ending(&self) -> Option<Ending> {
        if !self.caught_up {
            return None;
        }
        match self.status {
            pb::JobStatus::Complete | pb::JobStatus::DryRunComplete => Some(Ending::Complete),
            pb::JobStatus::Failed | pb::JobStatus::Cancelled => Some(Ending::Unsuccessful),
            _ => None,
        }
    }

    /// `[#####-----]  52%  5200/10000 tasks  (3 failed)  1234/s  ETA 4s  Active`;
    /// without a bar when `bar_width` is `None`.
    fn progress_line(&self, bar_width: Option<usize>) -> String {
        let done = self.succeeded + self.failed;
        let mut line = String::new();
        if self.total > 0 {
            let fraction = (done as f64 / self.total as f64).min(1.0);
            if let Some(width) = bar_width {
                let filled = (fraction * width as f64).round() as usize;
                line.push_str(&format!(
                    "[{}{}]  ",
                    "#".repeat(filled),
                    "-".repeat(width - filled.min(width))
                ));
            }
            line.push_str(&format!("{:>3.0}%  ", fraction * 100.0));
        }
        line.push_str(&format!("{done}/{} tasks", self.total));
        if self.failed > 0 {
            line.push_str(&format!("  ({} failed)", self.failed));
        }
        if let Some(rate) = self.rate() {
            line.push_str(&format!("  {rate:.0}/s"));
            if rate > 0.0 && self.total > done {
                let eta = ((self.total - done) as f64 / rate).ceil() as u64;
                line.push_str(&format!("  ETA {}", duration(eta)));
            }
        }
        line.push_str(&format!("  {}", table::status_name(self.status as i32)));
        line
    }
}

/// `1h02m`, `4m05s`, `7s`.
fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The closing block: final status, counts and failure reasons.
fn summary(job: &pb::JobDescriptor) -> String {
    let mut fields = vec![
        ("Status", table::status_name(job.status)),
        (
            "Tasks",
            format!(
                "{} succeeded, {} failed, {} total",
                job.progress_summary
                    .as_ref()
                    .map_or(0, |s| s.number_of_tasks_succeeded),
                job.progress_summary
                    .as_ref()
                    .map_or(0, |s| s.number_of_tasks_failed),
                job.progress_summary
                    .as_ref()
                    .map_or(0, |s| s.total_number_of_tasks)
            ),
        ),
    ];
    fields.extend(table::outcome_fields(job));
    table::render_fields(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(total: u64) -> State {
        State::new(&pb::JobDescriptor {
            status: pb::JobStatus::Active as i32,
            progress_summary: Some(pb::JobProgressSummary {
                total_number_of_tasks: total,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn progress(succeeded: u64, failed: u64, total: u64) -> pb::JobProgress {
        pb::JobProgress {
            progress_summary: Some(pb::JobProgressSummary {
                total_number_of_tasks: total,
                number_of_tasks_succeeded: succeeded,
                number_of_tasks_failed: failed,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_shows_rate_and_eta_from_recent_samples() {
        let mut state = state(1000);
        let start = Instant::now();
        state.apply_progress(&progress(100, 0, 1000), start);
        state.apply_progress(&progress(280, 20, 1000), start + Duration::from_secs(2));
        let line = state.progress_line(Some(10));
        assert_eq!(
            line,
            "[###-------]   30%  300/1000 tasks  (20 failed)  100/s  ETA 7s  Active"
        );
    }

    #[test]
    fn old_samples_leave_the_rate_window() {
        let mut state = state(10_000);
        let start = Instant::now();
        state.apply_progress(&progress(0, 0, 10_000), start);
        state.apply_progress(&progress(100, 0, 10_000), start + Duration::from_secs(20));
        state.apply_progress(&progress(1100, 0, 10_000), start + Duration::from_secs(21));
        state.apply_progress(&progress(2100, 0, 10_000), start + Duration::from_secs(22));
        assert_eq!(state.rate(), Some(1000.0));
    }

    #[test]
    fn terminal_statuses_end_the_watch() {
        let mut state = state(1);
        state.status = pb::JobStatus::Complete;
        assert!(state.ending().is_none(), "not before the log is replayed");
        state.caught_up = true;
        state.status = pb::JobStatus::Active;
        assert!(state.ending().is_none());
        state.status = pb::JobStatus::Complete;
        assert!(matches!(state.ending(), Some(Ending::Complete)));
        state.status = pb::JobStatus::Failed;
        assert!(matches!(state.ending(), Some(Ending::Unsuccessful)));
        state.status = pb::JobStatus::Cancelled;
        assert!(matches!(state.ending(), Some(Ending::Unsuccessful)));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(245), "4m05s");
        assert_eq!(duration(3720), "1h02m");
    }
}
