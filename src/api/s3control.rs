//! The S3 Control job API (2018-08-20) on a listener of its own, for
//! `aws s3control`, boto3 and the AWS SDKs: CreateJob, DescribeJob,
//! ListJobs, UpdateJobStatus, UpdateJobPriority and the job tagging calls.
//!
//! A thin adapter: each request is read into the contract's message
//! ([`crate::aws::s3control`]) and handed to the same [`JobApi`] the gRPC
//! service is, with the caller's grant; the answer, or the error, is written
//! back in AWS's shapes and HTTP statuses, so the SDKs raise their modelled
//! exceptions. The account is the `x-amz-account-id` header. Any `Host` is
//! accepted (the SDKs prefix the account id to the endpoint's host), and so
//! are absolute-form request targets, so that a client can reach the
//! listener through `HTTP_PROXY` without DNS for that name. With
//! `--auth-tokens`, requests must carry a valid Signature Version 4 from an
//! access key of the tokens file.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::debug;

use super::JobApi;
use super::auth::Access;
use crate::aws::node::Node;
use crate::aws::s3control::{self, NAMESPACE};
use crate::aws::sigv4;
use crate::aws::xml::{self, Writer};
use crate::domain::text::{clip, truncated};
use crate::proto::{self as pb, job_service_server::JobService};

/// What the S3 Control listener serves with.
#[derive(Clone)]
pub struct S3Control {
    /// The job service every call goes to.
    pub jobs: JobApi,
    /// Tokens and access keys.
    pub access: Arc<Access>,
    /// The region in job ARNs.
    pub region: String,
    /// The largest request body read.
    pub max_request_bytes: usize,
    /// Requests each account may make per second (and in a burst).
    pub rate: RateLimit,
}

/// A token bucket per account: `per_second` requests a second, bursts of
/// as many. One account's flood is answered with TooManyRequestsException
/// and takes nothing from the others.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    buckets: Arc<std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>>,
}

impl RateLimit {
    /// `per_second` requests a second per account.
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second.max(1)),
            buckets: Arc::default(),
        }
    }

    /// Takes one request of `account`'s allowance; false when it is spent.
    fn admit(&self, account: &str) -> bool {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // A bucket idle for a second is full again, the same as no bucket:
        // forgetting those keeps the table to the accounts of the last second.
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 1);
        }
        let (tokens, at) = buckets
            .entry(account.to_owned())
            .or_insert((self.per_second, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An error in AWS's shape: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AwsError {
    code: &'static str,
    status: u16,
    message: String,
}

impl AwsError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> AwsError {
        AwsError {
            code,
            status,
            message: truncated(&message.into(), 1024),
        }
    }

    fn bad_request(message: impl Into<String>) -> AwsError {
        AwsError::new("BadRequestException", 400, message)
    }
}

/// Which operation a request is, for errors the model names per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    CreateJob,
    DescribeJob,
    ListJobs,
    UpdateJobStatus,
    UpdateJobPriority,
    PutJobTagging,
    GetJobTagging,
    DeleteJobTagging,
}

/// A gRPC status as the S3 Control exception the SDKs model for it.
fn aws_error(status: &Status, call: Call) -> AwsError {
    let message = status.message().to_owned();
    match status.code() {
        Code::InvalidArgument if call == Call::ListJobs && message.starts_with("page_token") => {
            AwsError::new("InvalidNextTokenException", 400, message)
        }
        Code::InvalidArgument if call == Call::ListJobs => {
            AwsError::new("InvalidRequestException", 400, message)
        }
        Code::InvalidArgument if message.starts_with("tags:") && message.contains("at most") => {
            AwsError::new("TooManyTagsException", 400, message)
        }
        Code::InvalidArgument | Code::OutOfRange => AwsError::bad_request(message),
        Code::NotFound => AwsError::new("NotFoundException", 404, message),
        Code::FailedPrecondition => AwsError::new("JobStatusException", 409, message),
        Code::AlreadyExists => AwsError::new("IdempotencyException", 409, message),
        Code::ResourceExhausted | Code::Aborted => {
            AwsError::new("TooManyRequestsException", 429, message)
        }
        Code::PermissionDenied | Code::Unauthenticated => {
            AwsError::new("AccessDenied", 403, message)
        }
        Code::Unavailable => AwsError::new("InternalServiceException", 503, message),
        _ => AwsError::new("InternalServiceException", 500, message),
    }
}

/// Serves S3 Control on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, service: S3Control, shutdown: CancellationToken) {
    let service = Arc::new(service);
    let handler = move |request, _peer| {
        let service = service.clone();
        async move { service.respond(request).await }
    };
    crate::http1::serve("S3 Control", listener, handler, shutdown).await;
}

impl S3Control {
    async fn respond(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, self.max_request_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return reply_error(
                    &request_id,
                    &AwsError::new(
                        "BadRequestException",
                        413,
                        format!(
                            "the request body is larger than {} bytes",
                            self.max_request_bytes
                        ),
                    ),
                );
            }
        };
        match self.handle(&parts, &body).await {
            Ok((status, document)) => http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/xml")
                .header("x-amz-request-id", &request_id)
                .body(Full::new(Bytes::from(document)))
                .unwrap_or_default(),
            Err(error) => {
                debug!(code = error.code, message = %error.message, "S3 Control call refused");
                reply_error(&request_id, &error)
            }
        }
    }

    async fn handle(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<(u16, String), AwsError> {
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        let grant = self.authenticate(parts, path, query, body)?;
        let account = parts
            .headers
            .get("x-amz-account-id")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| AwsError::bad_request("the x-amz-account-id header is required"))?
            .to_owned();
        if !crate::domain::AccountId::is_valid(&account) {
            return Err(AwsError::bad_request(
                "the x-amz-account-id header must be 12 digits",
            ));
        }
        if !self.rate.admit(&account) {
            return Err(AwsError::new(
                "TooManyRequestsException",
                429,
                "the account made more requests per second than --s3control-requests-per-second allows",
            ));
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let granted = Granted(grant);
        let method = parts.method.as_str();
        match (method, segments.as_slice()) {
            ("POST", ["v20180820", "jobs"]) => {
                let document =
                    xml::parse(body).map_err(|e| AwsError::bad_request(e.to_string()))?;
                let mut request = s3control::create_job(&account, Node::Xml(&document))
                    .map_err(|e| AwsError::bad_request(e.0))?;
                if request.client_request_token.is_empty() {
                    return Err(AwsError::bad_request("ClientRequestToken is required"));
                }
                if request.role_arn.is_empty() {
                    return Err(AwsError::bad_request("RoleArn is required"));
                }
                request.account_id = account;
                let created = self
                    .jobs
                    .create_job(granted.of(request))
                    .await
                    .map_err(|s| aws_error(&s, Call::CreateJob))?
                    .into_inner();
                let mut out = Writer::document("CreateJobResult", NAMESPACE);
                out.leaf("JobId", &created.job_id);
                Ok((200, out.finish("CreateJobResult")))
            }
            ("GET", ["v20180820", "jobs"]) => {
                let statuses = params
                    .iter()
                    .filter(|(key, _)| key == "jobStatuses")
                    .map(|(_, name)| {
                        s3control::status_from_name(name)
                            .map(|s| s as i32)
                            .ok_or_else(|| {
                                AwsError::new(
                                    "InvalidRequestException",
                                    400,
                                    format!("jobStatuses {name:.40?} is not a job status"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let page_size = match param("maxResults") {
                    Some(value) => value.parse().map_err(|_| {
                        AwsError::new("InvalidRequestException", 400, "maxResults must be 0–1000")
                    })?,
                    None => 0,
                };
                let page = self
                    .jobs
                    .list_jobs(granted.of(pb::ListJobsRequest {
                        account_id: account,
                        statuses,
                        page_size,
                        page_token: param("nextToken").unwrap_or_default(),
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::ListJobs))?
                    .into_inner();
                let mut out = Writer::document("ListJobsResult", NAMESPACE);
                out.leaf_if("NextToken", &page.next_page_token);
                out.start("Jobs");
                for job in &page.jobs {
                    s3control::job_list_descriptor(&mut out, job);
                }
                out.end("Jobs");
                Ok((200, out.finish("ListJobsResult")))
            }
            ("GET", ["v20180820", "jobs", id]) => {
                let job = self
                    .jobs
                    .describe_job(granted.of(pb::DescribeJobRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::DescribeJob))?
                    .into_inner()
                    .job
                    .unwrap_or_default();
                let mut out = Writer::document("DescribeJobResult", NAMESPACE);
                s3control::job_descriptor(&mut out, &job, &self.region);
                Ok((200, out.finish("DescribeJobResult")))
            }
            ("POST", ["v20180820", "jobs", id, "status"]) => {
                let requested = match param("requestedJobStatus").as_deref() {
                    Some("Ready") => pb::JobStatus::Ready,
                    Some("Cancelled") => pb::JobStatus::Cancelled,
                    _ => {
                        return Err(AwsError::bad_request(
                            "requestedJobStatus must be Ready or Cancelled",
                        ));
                    }
                };
                let updated = self
                    .jobs
                    .update_job_status(granted.of(pb::UpdateJobStatusRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                        requested_job_status: requested as i32,
                        status_update_reason: param("statusUpdateReason").unwrap_or_default(),
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::UpdateJobStatus))?
                    .into_inner();
                let mut out = Writer::document("UpdateJobStatusResult", NAMESPACE);
                out.leaf("JobId", &updated.job_id)
                    .leaf("Status", &s3control::status_name(updated.status))
                    .leaf_if("StatusUpdateReason", &updated.status_update_reason);
                Ok((200, out.finish("UpdateJobStatusResult")))
            }
            ("POST", ["v20180820", "jobs", id, "priority"]) => {
                let priority = param("priority")
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| AwsError::bad_request("priority must be 0–2147483647"))?;
                let updated = self
                    .jobs
                    .update_job_priority(granted.of(pb::UpdateJobPriorityRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                        priority,
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::UpdateJobPriority))?
                    .into_inner();
                let mut out = Writer::document("UpdateJobPriorityResult", NAMESPACE);
                out.leaf("JobId", &updated.job_id)
                    .leaf("Priority", &updated.priority.to_string());
                Ok((200, out.finish("UpdateJobPriorityResult")))
            }
            ("PUT", ["v20180820", "jobs", id, "tagging"]) => {
                let document =
                    xml::parse(body).map_err(|e| AwsError::bad_request(e.to_string()))?;
                let tags = Node::Xml(&document)
                    .get("Tags")
                    .map(s3control::tags)
                    .transpose()
                    .map_err(|e| AwsError::bad_request(e.0))?
                    .unwrap_or_default();
                self.jobs
                    .put_job_tagging(granted.of(pb::PutJobTaggingRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                        tags,
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::PutJobTagging))?;
                Ok((
                    200,
                    Writer::document("PutJobTaggingResult", NAMESPACE)
                        .finish("PutJobTaggingResult"),
                ))
            }
            ("GET", ["v20180820", "jobs", id, "tagging"]) => {
                let tagged = self
                    .jobs
                    .get_job_tagging(granted.of(pb::GetJobTaggingRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::GetJobTagging))?
                    .into_inner();
                let mut out = Writer::document("GetJobTaggingResult", NAMESPACE);
                s3control::write_tags(&mut out, &tagged.tags);
                Ok((200, out.finish("GetJobTaggingResult")))
            }
            ("DELETE", ["v20180820", "jobs", id, "tagging"]) => {
                self.jobs
                    .delete_job_tagging(granted.of(pb::DeleteJobTaggingRequest {
                        account_id: account,
                        job_id: (*id).to_owned(),
                    }))
                    .await
                    .map_err(|s| aws_error(&s, Call::DeleteJobTagging))?;
                Ok((
                    200,
                    Writer::document("DeleteJobTaggingResult", NAMESPACE)
                        .finish("DeleteJobTaggingResult"),
                ))
            }
            _ => Err(AwsError::new(
                "InvalidRequestException",
                400,
                format!(
                    "{method} {} is not an S3 Control job operation batchops serves",
                    clip(path)
                ),
            )),
        }
    }

    /// The caller's grant: none needed without a tokens file; else the
    /// access key's, once its signature checks out.
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<Option<super::auth::Grant>, AwsError> {
        if self.access.is_open() {
            return Ok(None);
        }
        let request = sigv4::Request {
            method: parts.method.as_str(),
            path,
            query,
            headers: &parts.headers,
            body,
        };
        let key = sigv4::verify(&request, |id| self.access.secret_of(id), chrono::Utc::now())
            .map_err(|error| AwsError::new(error.code(), error.status(), error.to_string()))?;
        Ok(self.access.grant_of_key(&key))
    }
}

/// The caller's grant, carried into each call as the gRPC interceptor
/// carries a token's.
struct Granted(Option<super::auth::Grant>);

impl Granted {
    fn of<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(grant) = self.0.clone() {
            request.extensions_mut().insert(grant);
        }
        request
    }
}

/// S3 Control's error document.
fn reply_error(request_id: &str, error: &AwsError) -> http::Response<Full<Bytes>> {
    let mut out = Writer::document("ErrorResponse", NAMESPACE);
    out.start("Error")
        .leaf("Code", error.code)
        .leaf("Message", &error.message)
        .end("Error")
        .leaf("RequestId", request_id);
    http::Response::builder()
        .status(error.status)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", request_id)
        .body(Full::new(Bytes::from(out.finish("ErrorResponse"))))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_become_the_modelled_exceptions() {
        let code = |code, message: &str, call| aws_error(&Status::new(code, message), call);
        assert_eq!(
            code(Code::NotFound, "x", Call::DescribeJob).code,
            "NotFoundException"
        );
        assert_eq!(code(Code::NotFound, "x", Call::DescribeJob).status, 404);
        assert_eq!(
            code(Code::FailedPrecondition, "x", Call::UpdateJobStatus).code,
            "JobStatusException"
        );
        assert_eq!(
            code(Code::AlreadyExists, "x", Call::CreateJob).code,
            "IdempotencyException"
        );
        assert_eq!(
            code(
                Code::InvalidArgument,
                "tags: at most 50 tags, got 51",
                Call::PutJobTagging
            )
            .code,
            "TooManyTagsException"
        );
        assert_eq!(
            code(
                Code::InvalidArgument,
                "page_token: is not a token",
                Call::ListJobs
            )
            .code,
            "InvalidNextTokenException"
        );
        assert_eq!(
            code(Code::ResourceExhausted, "x", Call::CreateJob).status,
            429
        );
        assert_eq!(
            code(Code::Internal, "x", Call::CreateJob).code,
            "InternalServiceException"
        );
    }
}
