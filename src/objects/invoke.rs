//! The `invoke` operation: one AWS Lambda S3 batch event per task, POSTed as
//! JSON to an HTTP(S) endpoint, and the handler's reply turned into a task
//! outcome. Existing Lambda-style handlers work unchanged: schema 1.0 names
//! the bucket by ARN, schema 2.0 by name and adds the job's user arguments;
//! keys are URL-encoded as S3 sends them.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::encode_key;
use super::operations::{TaskOperation, TaskOutcome};
use crate::domain::{InvocationSchema, InvokeSpec, JobId};
use crate::store::Task;

/// The endpoints Invoke may call: URL prefixes, matched at a path boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    prefixes: Vec<String>,
}

impl Allowlist {
    /// Parses a comma-separated list of URL prefixes.
    pub fn parse(list: &str) -> Result<Allowlist, String> {
        let mut prefixes = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = url::Url::parse(entry).map_err(|_| format!("{entry:?} is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!("{entry:?} is not an http(s) URL"));
            }
            prefixes.push(entry.to_owned());
        }
        Ok(Allowlist { prefixes })
    }

    /// Whether `endpoint` starts with an allowed prefix, ending at a `/`, `?`
    /// or the end of the URL (so `http://a:80` does not allow `http://a:8080`).
    pub fn permits(&self, endpoint: &str) -> bool {
        self.prefixes.iter().any(|prefix| {
            endpoint.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                rest.is_empty()
                    || prefix.ends_with('/')
                    || rest.starts_with('/')
                    || rest.starts_with('?')
            })
        })
    }
}

/// Calls an endpoint with one task per request.
pub struct Invoke {
    pub http: reqwest::Client,
    pub spec: InvokeSpec,
    pub job_id: JobId,
    pub allowlist: std::sync::Arc<Allowlist>,
}

impl TaskOperation for Invoke {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(self.call(task))
    }
}

impl Invoke {
    async fn call(&self, task: &Task) -> TaskOutcome {
        if !self.allowlist.permits(&self.spec.endpoint_url) {
            return TaskOutcome::failure(
                403,
                "EndpointNotAllowed",
                "the invoke endpoint is not in the server's allowlist",
            );
        }
        let task_id = format!("{}-{}", self.job_id, task.number);
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let body = event(&self.spec, self.job_id, &task_id, &invocation_id, task);
        let sent = self
            .http
            .post(&self.spec.endpoint_url)
            .timeout(Duration::from_millis(self.spec.timeout_millis))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return TaskOutcome::failure(
                    500,
                    "RequestTimeout",
                    "the invoke endpoint did not answer in time",
                )
                .retryable();
            }
            Err(error) => {
                return TaskOutcome::failure(
                    500,
                    "ConnectionFailed",
                    format!(
                        "the invoke endpoint could not be reached: {}",
                        without_url(&error)
                    ),
                )
                .retryable();
            }
        };
        let status = response.status().as_u16();
        let text = match response.bytes().await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                return TaskOutcome::failure(
                    500,
                    "ConnectionFailed",
                    format!("the reply could not be read: {}", without_url(&error)),
                )
                .retryable();
            }
        };
        if !(200..300).contains(&status) {
            let outcome = TaskOutcome::failure(
                i32::from(status),
                "InvokeHttpError",
                format!(
                    "the invoke endpoint replied HTTP {status}: {}",
                    excerpt(&text)
                ),
            );
            return if status == 429 || status >= 500 {
                outcome.retryable()
            } else {
                outcome
            };
        }
        interpret_reply(&text, &task_id, i32::from(status))
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let mut error_text = error.to_string();
    if let Some(url) = error.url() {
        error_text = error_text.replace(url.as_str(), "the endpoint");
    }
    error_text
}

/// The Lambda S3 batch event for one task.
pub fn event(
    spec: &InvokeSpec,
    job_id: JobId,
    task_id: &str,
    invocation_id: &str,
    task: &Task,
) -> serde_json::Value {
    let key = encode_key(&task.object.key);
    match spec.schema {
        InvocationSchema::V1 => json!({
            "invocationSchemaVersion": "1.0",
            "invocationId": invocation_id,
            "job": { "id": job_id.to_string() },
            "tasks": [{
                "taskId": task_id,
                "s3Key": key,
                "s3VersionId": task.object.version_id,
                "s3BucketArn": format!("arn:aws:s3:::{}", task.object.bucket),
            }],
        }),
        InvocationSchema::V2 => json!({
            "invocationSchemaVersion": "2.0",
            "invocationId": invocation_id,
            "job": { "id": job_id.to_string(), "userArguments": spec.user_arguments },
            "tasks": [{
                "taskId": task_id,
                "s3Key": key,
                "s3VersionId": task.object.version_id,
                "s3Bucket": task.object.bucket,
            }],
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(default)]
    treat_missing_keys_as: Option<ResultCode>,
    #[serde(default)]
    results: Vec<ReplyResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyResult {
    task_id: Option<String>,
    result_code: Option<ResultCode>,
    #[serde(default)]
    result_string: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
enum ResultCode {
    Succeeded,
    TemporaryFailure,
    PermanentFailure,
}

/// Turns a 2xx reply body into the task's outcome.
pub fn interpret_reply(body: &str, task_id: &str, http_status: i32) -> TaskOutcome {
    let reply: Reply = match serde_json::from_str(body) {
        Ok(reply) => reply,
        Err(error) => {
            return TaskOutcome::failure(
                http_status,
                "InvalidResponse",
                format!(
                    "the invoke reply is not a valid batch response ({error}): {}",
                    excerpt(body)
                ),
            );
        }
    };
    let result = reply
        .results
        .iter()
        .find(|r| r.task_id.as_deref() == Some(task_id))
        .or_else(|| {
            if reply.results.len() == 1 && reply.results[0].task_id.is_none() {
                reply.results.first()
            } else {
                None
            }
        });
    let default_code = reply
        .treat_missing_keys_as
        .unwrap_or(ResultCode::PermanentFailure);
    let (code, message) = match result {
        Some(result) => (
            result.result_code.unwrap_or(default_code),
            result.result_string.as_ref().map(|value| match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            }),
        ),
        None => (
            default_code,
            Some("the reply has no result for this task".to_owned()),
        ),
    };
    let message = message.unwrap_or_default();
    match code {
        ResultCode::Succeeded => TaskOutcome::success(http_status, message),
        ResultCode::PermanentFailure => {
            TaskOutcome::failure(http_status, "PermanentFailure", message)
        }
        ResultCode::TemporaryFailure => {
            TaskOutcome::failure(http_status, "TemporaryFailure", message).retryable()
        }
    }
}

fn excerpt(text: &str) -> String {
    let mut excerpt: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        excerpt.push('…');
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_prefixes_at_a_boundary() {
        let list =
            Allowlist::parse("http://127.0.0.1:8080, https://hooks.example.com/batch/").unwrap();
        assert!(list.permits("http://127.0.0.1:8080"));
        assert!(list.permits("http://127.0.0.1:8080/fn"));
        assert!(list.permits("https://hooks.example.com/batch/resize"));
        assert!(!list.permits("http://127.0.0.1:80801/fn"));
        assert!(!list.permits("http://127.0.0.1:8080.evil.com/fn"));
        assert!(!list.permits("https://hooks.example.com/other"));
        assert!(!Allowlist::default().permits("http://127.0.0.1:8080"));
        assert!(Allowlist::parse("ftp://x").is_err());
        assert!(Allowlist::parse("not a url").is_err());
    }

    #[test]
    fn keys_are_url_encoded_like_s3_events() {
        assert_eq!(encode_key("photos/a b+c.jpg"), "photos/a%20b%2Bc.jpg");
        assert_eq!(encode_key("ünï"), "%C3%BCn%C3%AF");
    }

    #[test]
    fn replies_map_to_outcomes() {
        let ok = r#"{"invocationSchemaVersion":"1.0","treatMissingKeysAs":"PermanentFailure","invocationId":"i",
                     "results":[{"taskId":"t","resultCode":"Succeeded","resultString":"done"}]}"#;
        assert_eq!(
            interpret_reply(ok, "t", 200),
            TaskOutcome::success(200, "done")
        );
        let temporary =
            r#"{"results":[{"taskId":"t","resultCode":"TemporaryFailure","resultString":"busy"}]}"#;
        let outcome = interpret_reply(temporary, "t", 200);
        assert!(outcome.retryable && !outcome.succeeded);
        assert_eq!(outcome.error_code.as_deref(), Some("TemporaryFailure"));
        let permanent =
            r#"{"results":[{"taskId":"t","resultCode":"PermanentFailure","resultString":"no"}]}"#;
        let outcome = interpret_reply(permanent, "t", 200);
        assert!(!outcome.retryable && !outcome.succeeded);
        let missing = r#"{"treatMissingKeysAs":"TemporaryFailure","results":[]}"#;
        assert!(interpret_reply(missing, "t", 200).retryable);
        let missing_default = r#"{"results":[]}"#;
        assert_eq!(
            interpret_reply(missing_default, "t", 200)
                .error_code
                .as_deref(),
            Some("PermanentFailure")
        );
        let structured = r#"{"results":[{"taskId":"t","resultCode":"Succeeded","resultString":["Alice","Bob"]}]}"#;
        assert_eq!(
            interpret_reply(structured, "t", 200)
                .result_message
                .as_deref(),
            Some(r#"["Alice","Bob"]"#)
        );
        let garbage = interpret_reply("<html>oops</html>", "t", 200);
        assert_eq!(garbage.error_code.as_deref(), Some("InvalidResponse"));
        assert!(
            garbage
                .result_message
                .unwrap()
                .contains("<html>oops</html>")
        );
        let wrong_code = interpret_reply(
            r#"{"results":[{"taskId":"t","resultCode":"Maybe"}]}"#,
            "t",
            200,
        );
        assert_eq!(wrong_code.error_code.as_deref(), Some("InvalidResponse"));
    }
}
