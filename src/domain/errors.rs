//! Per error code, how many of a job's tasks failed and a few of them: what
//! a failed or partly failed job says besides "look at the report".
//!
//! The summary is bounded whatever the tasks report, and it is the same
//! however results arrive: chunk summaries merge in any order into what one
//! summary of all the job's failures gives (`batchops replay` rebuilds it
//! from the task result log that way). So the codes kept are the
//! [`MAX_CODES`] smallest, and the samples of a code are its
//! [`MAX_SAMPLES`] lowest-numbered tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Error codes a summary names; failures of other codes are only counted.
pub const MAX_CODES: usize = 20;
/// Sample tasks kept per error code.
pub const MAX_SAMPLES: usize = 5;
/// The longest sample message kept, in characters.
pub const MAX_SAMPLE_MESSAGE: usize = 256;

/// One failed task, as a sample of its error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSample {
    /// The task's number in its job.
    pub task_number: i64,
    /// The object's bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The object's version, when the manifest named one.
    pub version_id: Option<String>,
    /// The task's result message, cut to [`MAX_SAMPLE_MESSAGE`] characters.
    pub message: String,
}

/// The failures of one error code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFailures {
    /// Tasks that failed with the code.
    pub failed: u64,
    /// The lowest-numbered of them, in task order.
    pub samples: Vec<ErrorSample>,
}

/// A job's failures by error code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// The named codes, at most [`MAX_CODES`].
    pub codes: BTreeMap<String, CodeFailures>,
    /// Failures whose code is not among `codes`.
    pub other_codes_failed: u64,
}

impl ErrorSummary {
    /// The summary of `failures`: (error code, sample) of each failed task.
    pub fn of(failures: impl IntoIterator<Item = (String, ErrorSample)>) -> ErrorSummary {
        let mut summary = ErrorSummary::default();
        for (code, sample) in failures {
            let mut one = ErrorSummary::default();
            one.codes.insert(
                code,
                CodeFailures {
                    failed: 1,
                    samples: vec![sample],
                },
            );
            summary.merge(&one);
        }
        summary
    }

    /// Adds `other`'s failures to these.
    pub fn merge(&mut self, other: &ErrorSummary) {
        self.other_codes_failed += other.other_codes_failed;
        for (code, failures) in &other.codes {
            let entry = self.codes.entry(code.clone()).or_default();
            entry.failed += failures.failed;
            entry.samples.extend(failures.samples.iter().cloned());
            entry.samples.sort_by_key(|sample| sample.task_number);
            entry.samples.dedup_by_key(|sample| sample.task_number);
            entry.samples.truncate(MAX_SAMPLES);
        }
        while self.codes.len() > MAX_CODES {
            if let Some((_, dropped)) = self.codes.pop_last() {
                self.other_codes_failed += dropped.failed;
            }
        }
    }

    /// Whether no task failed.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty() && self.other_codes_failed == 0
    }
}

impl ErrorSample {
    /// A sample of a failed task, its message cut to [`MAX_SAMPLE_MESSAGE`]
    /// characters.
    pub fn new(
        task_number: i64,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        message: Option<&str>,
    ) -> ErrorSample {
        ErrorSample {
            task_number,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.map(str::to_owned),
            message: message
                .unwrap_or_default()
                .chars()
                .take(MAX_SAMPLE_MESSAGE)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn failure(code: &str, task: i64) -> (String, ErrorSample) {
        (
            code.to_owned(),
            ErrorSample::new(task, "b", &format!("k{task}"), None, Some("boom")),
        )
    }

    proptest! {
        /// Chunks merged in any order give the summary of all failures at
        /// once, within its bounds.
        #[test]
        fn merging_chunks_in_any_order_gives_the_summary_of_all_failures(
            failures in proptest::collection::vec((0u8..60, 0i64..10_000), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..10),
            seed in any::<u64>(),
        ) {
            let all: Vec<_> = failures
                .iter()
                .enumerate()
                .map(|(i, (code, task))| failure(&format!("Code{code:02}"), task * 1000 + i as i64))
                .collect();
            let whole = ErrorSummary::of(all.clone());
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(all.len())).collect();
            bounds.extend([0, all.len()]);
            bounds.sort_unstable();
            let mut chunks: Vec<ErrorSummary> = bounds
                .windows(2)
                .map(|w| ErrorSummary::of(all[w[0]..w[1]].iter().cloned()))
                .collect();
            // Any order of commits.
            let mut state = seed;
            for i in (1..chunks.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                chunks.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut merged = ErrorSummary::default();
            for chunk in &chunks {
                merged.merge(chunk);
            }
            prop_assert_eq!(&merged, &whole);
            prop_assert!(merged.codes.len() <= MAX_CODES);
            let counted: u64 = merged.codes.values().map(|c| c.failed).sum::<u64>() + merged.other_codes_failed;
            prop_assert_eq!(counted, all.len() as u64);
            for failures in merged.codes.values() {
                prop_assert!(failures.samples.len() <= MAX_SAMPLES);
                prop_assert!(failures.samples.windows(2).all(|w| w[0].task_number < w[1].task_number));
            }
        }
    }

    #[test]
    fn samples_are_the_lowest_task_numbers_and_messages_are_cut() {
        let summary = ErrorSummary::of((0..8).rev().map(|t| failure("NoSuchKey", t)));
        let numbers: Vec<i64> = summary.codes["NoSuchKey"]
            .samples
            .iter()
            .map(|s| s.task_number)
            .collect();
        assert_eq!(numbers, vec![0, 1, 2, 3, 4]);
        assert_eq!(summary.codes["NoSuchKey"].failed, 8);
        let long = ErrorSample::new(1, "b", "k", None, Some(&"é".repeat(1000)));
        assert_eq!(long.message.chars().count(), MAX_SAMPLE_MESSAGE);
    }
}
