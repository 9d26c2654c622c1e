//! The `invoke` operation: one AWS Lambda S3 batch event per task, POSTed as
//! JSON to an HTTP(S) endpoint, and the handler's reply turned into a task
//! outcome. Existing Lambda-style handlers work unchanged: schema 1.0 names
//! the bucket by ARN, schema 2.0 by name and adds the job's user arguments;
//! keys are URL-encoded as S3 sends them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::encode_key;
use super::outcome::{TaskOperation, TaskOutcome};
use crate::domain::Task;
use crate::domain::{InvocationSchema, InvokeSpec, JobId};

/// The longest endpoint URL a job may name, in bytes.
pub const MAX_ENDPOINT_URL_BYTES: usize = 2048;

/// The endpoints Invoke may call: URL prefixes, compared after the URL is
/// normalised (dot segments resolved, percent-encoded ones included), by
/// scheme, host and port, and by path at a segment boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    prefixes: Vec<url::Url>,
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
            prefixes.push(url);
        }
        Ok(Allowlist { prefixes })
    }

    /// Whether `endpoint`, once normalised, is under an allowed prefix: same
    /// scheme, host and port, and a path equal to the prefix's or below it
    /// (so `http://a:80` does not allow `http://a:8080`, and `/hooks/`
    /// does not allow `/hooks/../admin`).
    pub fn permits(&self, endpoint: &str) -> bool {
        let Ok(url) = url::Url::parse(endpoint) else {
            return false;
        };
        self.prefixes.iter().any(|prefix| {
            prefix.scheme() == url.scheme()
                && prefix.host() == url.host()
                && prefix.port_or_known_default() == url.port_or_known_default()
                && url.username().is_empty()
                && url.password().is_none()
                && path_within(prefix.path(), url.path())
                && prefix
                    .query()
                    .is_none_or(|query| url.query() == Some(query))
        })
    }
}

/// Whether `path` is `prefix` or lies below it at a segment boundary.
fn path_within(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
}

/// Why an endpoint URL is refused at job creation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an http(s) URL, or too long.
    #[error("must be an http(s) URL of at most {MAX_ENDPOINT_URL_BYTES} bytes")]
    NotHttp,
    /// A user name or password in the URL.
    #[error("must not carry a user name or password")]
    Credentials,
    /// A path that hides where it goes.
    #[error("must not contain '.' or '..' path segments, encoded or not, or encoded '/' or '\\'")]
    DotSegments,
    /// Outside the allowlist; names the URL's origin.
    #[error("{0} is not in the server's invoke allowlist")]
    NotAllowed(String),
}

/// Checks an endpoint a job names: an http(s) URL without credentials whose
/// path says plainly where it goes (no dot segments, no encoded dots,
/// slashes or backslashes a server might decode), under the allowlist.
pub fn check_endpoint(endpoint: &str, allowlist: &Allowlist) -> Result<url::Url, EndpointError> {
    if endpoint.len() > MAX_ENDPOINT_URL_BYTES {
        return Err(EndpointError::NotHttp);
    }
    let url = url::Url::parse(endpoint)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or(EndpointError::NotHttp)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    if endpoint.contains('\\') || raw_path(endpoint).split('/').any(is_hidden_segment) {
        return Err(EndpointError::DotSegments);
    }
    if !allowlist.permits(url.as_str()) {
        return Err(EndpointError::NotAllowed(
            url.origin().ascii_serialization(),
        ));
    }
    Ok(url)
}

/// The path of a URL as written: after the authority, before `?` or `#`.
fn raw_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|start| &after_scheme[start..])
        .unwrap_or("");
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// A segment that is `.` or `..` once decoded, or hides a separator.
fn is_hidden_segment(segment: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    decoded == "." || decoded == ".." || decoded.contains(['/', '\\'])
}

/// What Invoke may take from an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokeLimits {
    /// The largest reply read, in bytes; a larger one fails the task.
    pub max_reply_bytes: usize,
}

impl Default for InvokeLimits {
    fn default() -> Self {
        InvokeLimits {
            max_reply_bytes: 1 << 20,
        }
    }
}

/// The HTTP client Invoke calls endpoints with: it never follows a
/// redirect, since the target of one was never checked against the
/// allowlist (and a 307 would carry the task's body along).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The Lambda functions Invoke jobs may name (S3 Control's `LambdaInvoke.FunctionArn`, or `function_arn` with
/// no endpoint): each
/// function ARN (or bare function name) stands for an HTTP endpoint, which
/// must still match the server's invoke allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Functions {
    endpoints: BTreeMap<String, String>,
}

impl Functions {
    /// Parses `ARN=URL` pairs separated by commas.
    pub fn parse(list: &str) -> std::result::Result<Functions, String> {
        let mut endpoints = BTreeMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (function, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not FUNCTION=URL"))?;
            let (function, url) = (function.trim(), url.trim());
            if function.is_empty() || url::Url::parse(url).is_err() {
                return Err(format!("{entry:?} is not FUNCTION=URL"));
            }
            endpoints.insert(function.to_owned(), url.to_owned());
        }
        Ok(Functions { endpoints })
    }

    /// The endpoint of `function`: by its whole ARN, else by its name.
    pub fn endpoint(&self, function: &str) -> Option<&str> {
        self.endpoints
            .get(function)
            .or_else(|| {
                let name = function_name(function);
                self.endpoints
                    .iter()
                    .find(|(known, _)| function_name(known) == name)
                    .map(|(_, url)| url)
            })
            .map(String::as_str)
    }
}

/// The function name of a Lambda ARN (`arn:aws:lambda:r:a:function:name[:q]`).
fn function_name(arn: &str) -> &str {
    match arn.split_once("function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => arn,
    }
}

/// Calls an endpoint with one task per request.
pub struct Invoke {
    /// The client calls are made with (it follows no redirect).
    pub http: reqwest::Client,
    /// The job's Invoke settings.
    pub spec: InvokeSpec,
    /// The job, named in every event.
    pub job_id: JobId,
    /// The endpoints that may be called.
    pub allowlist: std::sync::Arc<Allowlist>,
    /// The reply cap.
    pub limits: InvokeLimits,
}

impl TaskOperation for Invoke {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(self.call(task))
    }
}

impl Invoke {
    async fn call(&self, task: &Task) -> TaskOutcome {
        let endpoint = match check_endpoint(&self.spec.endpoint_url, &self.allowlist) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                return TaskOutcome::failure(
                    403,
                    "EndpointNotAllowed",
                    "the invoke endpoint is not in the server's allowlist",
                );
            }
        };
        let task_id = format!("{}-{}", self.job_id, task.number);
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let body = event(&self.spec, self.job_id, &task_id, &invocation_id, task);
        let sent = self
            .http
            .post(endpoint)
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
        if response.status().is_redirection() {
            return TaskOutcome::failure(
                i32::from(status),
                "InvokeRedirect",
                format!(
                    "the invoke endpoint replied HTTP {status}, a redirect; redirects are not followed"
                ),
            );
        }
        let text = match read_capped(response, self.limits.max_reply_bytes).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(ReadError::TooLarge) => {
                return TaskOutcome::failure(
                    i32::from(status),
                    "InvokeReplyTooLarge",
                    format!(
                        "the invoke endpoint's reply is larger than the limit of {} bytes",
                        self.limits.max_reply_bytes
                    ),
                );
            }
            Err(ReadError::Failed(error)) => {
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

enum ReadError {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads a reply body chunk by chunk, giving up once it passes `max` bytes,
/// so a huge reply never sits in memory.
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn without_url(error: &reqwest::Error) -> String {
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
    fn dot_segments_cannot_walk_out_of_an_allowed_path() {
        let list = Allowlist::parse("http://127.0.0.1:9000/hooks/").unwrap();
        assert!(list.permits("http://127.0.0.1:9000/hooks/resize"));
        for escaping in [
            "http://127.0.0.1:9000/hooks/../admin",
            "http://127.0.0.1:9000/hooks/%2e%2e/admin",
            "http://127.0.0.1:9000/hooks/%2E%2E/admin",
            "http://127.0.0.1:9000/hooks/.%2e/admin",
            "http://127.0.0.1:9000/hooks\\..\\admin",
            "http://user@127.0.0.1:9000/hooks/x",
        ] {
            assert!(!list.permits(escaping), "{escaping}");
            assert!(check_endpoint(escaping, &list).is_err(), "{escaping}");
        }
        for hidden in [
            "http://127.0.0.1:9000/hooks/..%2Fadmin",
            "http://127.0.0.1:9000/hooks/a%5c..%5cadmin",
            "http://127.0.0.1:9000/hooks/./x",
        ] {
            assert_eq!(
                check_endpoint(hidden, &list),
                Err(EndpointError::DotSegments),
                "{hidden}"
            );
        }
        assert!(check_endpoint("http://127.0.0.1:9000/hooks/x?a=../b", &list).is_ok());
        let other_port = check_endpoint("http://127.0.0.1:9001/hooks/x", &list);
        assert!(matches!(other_port, Err(EndpointError::NotAllowed(_))));
    }

    #[test]
    fn functions_resolve_by_arn_or_name() {
        let table = Functions::parse(
            "arn:aws:lambda:us-east-1:111122223333:function:resize=http://127.0.0.1:9/resize",
        )
        .unwrap();
        assert_eq!(
            table.endpoint("arn:aws:lambda:us-east-1:111122223333:function:resize"),
            Some("http://127.0.0.1:9/resize")
        );
        assert_eq!(
            table.endpoint("arn:aws:lambda:us-east-1:111122223333:function:resize:$LATEST"),
            Some("http://127.0.0.1:9/resize")
        );
        assert_eq!(table.endpoint("other"), None);
        assert!(Functions::parse("nonsense").is_err());
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
