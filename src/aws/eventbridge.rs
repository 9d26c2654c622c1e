//! A job's status change as the EventBridge event S3 Batch Operations sends
//! through CloudTrail ("AWS Service Event via CloudTrail", `eventName`
//! JobCreated or JobStatusChanged), so rules and handlers written for AWS's
//! events read batchops' webhooks unchanged. batchops adds
//! `detail.batchops`: the event's log position, its job sequence and the
//! status it came from.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::{FailureReason, Job, JobId, JobStatus};

/// One status change of a job, with what its notification says.
#[derive(Debug, Clone)]
pub struct StatusChange<'a> {
    /// The job right after the change.
    pub job: &'a Job,
    /// The status before, or `None` for the job's creation.
    pub previous: Option<JobStatus>,
    /// The reason a caller gave for this change (confirm, cancel).
    pub reason: Option<&'a str>,
    /// The job's failure reasons, for a change to Failing or Failed (the
    /// codes AWS lists as `failureCodes`); empty otherwise.
    pub failures: &'a [FailureReason],
    /// The event's place in the whole log.
    pub position: i64,
    /// The event's place in the job's stream.
    pub sequence: u64,
    /// When the event was recorded.
    pub at: DateTime<Utc>,
}

/// The event's id: the same for every delivery attempt of one event, so
/// receivers drop repeats by it.
pub fn event_id(job_id: JobId, sequence: u64) -> uuid::Uuid {
    let digest = Sha256::new()
        .chain_update(b"batchops notification\0")
        .chain_update(job_id.0.as_bytes())
        .chain_update(sequence.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The EventBridge event for `change`; `region` goes into the job's ARN.
pub fn job_state_change(change: &StatusChange<'_>, region: &str) -> Value {
    let job = change.job;
    let account = job.spec.account_id.0.as_str();
    let id = event_id(job.id, change.sequence);
    let time = change.at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let arn = format!("arn:aws:s3:{region}:{account}:job/{}", job.id);
    let event_name = if change.previous.is_none() {
        "JobCreated"
    } else {
        "JobStatusChanged"
    };
    let failure_codes: Vec<&str> = change
        .failures
        .iter()
        .map(|reason| reason.failure_code.as_str())
        .collect();
    let mut reasons: Vec<&str> = change.reason.into_iter().collect();
    reasons.extend(
        change
            .failures
            .iter()
            .map(|reason| reason.failure_reason.as_str()),
    );
    json!({
        "version": "0",
        "id": id.to_string(),
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.s3",
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": {
            "eventVersion": "1.05",
            "userIdentity": {"accountId": account, "invokedBy": "s3.amazonaws.com"},
            "eventTime": time,
            "eventSource": "s3.amazonaws.com",
            "eventName": event_name,
            "awsRegion": region,
            "sourceIPAddress": "s3.amazonaws.com",
            "userAgent": "s3.amazonaws.com",
            "requestParameters": null,
            "responseElements": null,
            "eventID": id.to_string(),
            "readOnly": false,
            "eventType": "AwsServiceEvent",
            "managementEvent": true,
            "recipientAccountId": account,
            "serviceEventDetails": {
                "jobId": job.id.to_string(),
                "jobArn": arn,
                "status": job.status.as_str(),
                "jobEventId": id.simple().to_string(),
                "failureCodes": failure_codes,
                "statusChangeReason": reasons,
            },
            "eventCategory": "Management",
            "batchops": {
                "position": change.position,
                "sequence": change.sequence,
                "previousStatus": change.previous.map(JobStatus::as_str),
                "totalNumberOfTasks": job.progress.total,
                "dryRun": job.spec.dry_run,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job(status: JobStatus) -> Job {
        let spec = crate::domain::tests::spec(false);
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let mut job =
            crate::domain::created(JobId(uuid::Uuid::nil()), &crate::domain::create(spec), at);
        job.status = status;
        job
    }

    #[test]
    fn a_failure_reads_as_aws_job_status_changed_event_with_batchops_position() {
        let failed = job(JobStatus::Failing);
        let failures = [FailureReason::new(
            "TaskFailureThresholdExceeded",
            "600 of 1000 tasks run failed",
        )];
        let change = StatusChange {
            job: &failed,
            previous: Some(JobStatus::Active),
            reason: None,
            failures: &failures,
            position: 42,
            sequence: 7,
            at: Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 5).unwrap(),
        };
        let event = job_state_change(&change, "eu-west-1");
        assert_eq!(event["detail-type"], "AWS Service Event via CloudTrail");
        assert_eq!(event["source"], "aws.s3");
        assert_eq!(event["time"], "2026-11-28T12:00:05Z");
        let detail = &event["detail"];
        assert_eq!(detail["eventName"], "JobStatusChanged");
        let details = &detail["serviceEventDetails"];
        assert_eq!(details["status"], "Failing");
        assert_eq!(
            details["jobArn"],
            "arn:aws:s3:eu-west-1:111122223333:job/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            details["failureCodes"],
            json!(["TaskFailureThresholdExceeded"])
        );
        assert_eq!(
            details["statusChangeReason"],
            json!(["600 of 1000 tasks run failed"])
        );
        assert_eq!(details["jobEventId"].as_str().unwrap().len(), 32);
        assert_eq!(detail["batchops"]["position"], 42);
        assert_eq!(detail["batchops"]["previousStatus"], "Active");
        assert_eq!(event["id"], detail["eventID"]);
    }

    #[test]
    fn an_events_id_is_the_same_on_every_attempt_and_differs_between_events() {
        let job = JobId(uuid::Uuid::nil());
        assert_eq!(event_id(job, 3), event_id(job, 3));
        assert_ne!(event_id(job, 3), event_id(job, 4));
        assert_ne!(event_id(job, 3), event_id(JobId(uuid::Uuid::max()), 3));
        let created = job_state_change(
            &StatusChange {
                job: &self::job(JobStatus::New),
                previous: None,
                reason: None,
                failures: &[],
                position: 1,
                sequence: 1,
                at: Utc::now(),
            },
            "us-east-1",
        );
        assert_eq!(created["detail"]["eventName"], "JobCreated");
        assert_eq!(created["detail"]["serviceEventDetails"]["status"], "New");
    }
}
