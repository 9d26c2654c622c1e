//! Tags, Object Lock, ACLs and restores on an S3 store, through the AWS SDK
//! for Rust's S3 client (the object_store crate makes none of these
//! requests). S3's error for the object becomes the task's error code and
//! HTTP status, as in AWS's completion reports.

use std::sync::{Arc, OnceLock};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime as S3DateTime;
use aws_sdk_s3::types::{
    AccessControlPolicy, GlacierJobParameters, Grant, Grantee as S3Grantee, ObjectCannedAcl,
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention, ObjectLockRetentionMode,
    Owner, Permission, RestoreRequest, Tag, Tagging, Tier, Type,
};
use futures::future::BoxFuture;

use super::outcome::{TaskOperation, TaskOutcome};
use crate::domain::{
    AclGrant, AclPermission, AclSpec, CannedAcl, GlacierJobTier, Grantee, LegalHold, ObjectTag,
    Operation, RestoreSpec, RetentionMode, RetentionSpec, Task,
};

/// The S3 client of the object-state operations: one for the process,
/// made on first use from the same `AWS_*` variables as the object store
/// (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_REGION` or
/// `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`). The engine
/// retries transient failures itself, so the client does not.
#[derive(Clone, Default)]
pub struct StateClient(Arc<OnceLock<Client>>);

impl StateClient {
    fn client(&self) -> &Client {
        self.0.get_or_init(client_from_env)
    }
}

fn client_from_env() -> Client {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    };
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .region(Region::new(
            var(&["AWS_REGION", "AWS_DEFAULT_REGION"]).unwrap_or_else(|| "us-east-1".into()),
        ))
        .force_path_style(
            var(&["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"]).is_none_or(|value| value != "true"),
        );
    if let Some(endpoint) = var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]) {
        config = config.endpoint_url(endpoint);
    }
    if let (Some(key), Some(secret)) =
        (var(&["AWS_ACCESS_KEY_ID"]), var(&["AWS_SECRET_ACCESS_KEY"]))
    {
        config = config.credentials_provider(Credentials::new(
            key,
            secret,
            var(&["AWS_SESSION_TOKEN"]),
            None,
            "batchops-environment",
        ));
    }
    Client::from_conf(config.build())
}

/// One object-state operation of a job, ready to run on its tasks.
pub struct StateOperation {
    client: StateClient,
    operation: Operation,
}

impl StateOperation {
    /// `operation`, one of the object-state operations, on `client`.
    pub fn new(client: StateClient, operation: Operation) -> StateOperation {
        StateOperation { client, operation }
    }
}

impl TaskOperation for StateOperation {
    fn run<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, TaskOutcome> {
        Box::pin(async move {
            let client = self.client.client();
            let object = &task.object;
            let (bucket, key) = (object.bucket.as_str(), object.key.as_str());
            let version = object.version_id.clone();
            match &self.operation {
                Operation::PutObjectTagging { tags } => {
                    let tagging = match tag_set(tags) {
                        Ok(tagging) => tagging,
                        Err(problem) => return invalid(problem),
                    };
                    let sent = client
                        .put_object_tagging()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version)
                        .tagging(tagging)
                        .send()
                        .await;
                    outcome(sent, "tags replaced")
                }
                Operation::DeleteObjectTagging => {
                    let sent = client
                        .delete_object_tagging()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version)
                        .send()
                        .await;
                    outcome(sent, "tags removed")
                }
                Operation::PutObjectLegalHold { status } => {
                    let sent = client
                        .put_object_legal_hold()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version)
                        .legal_hold(legal_hold(*status))
                        .send()
                        .await;
                    outcome(sent, format!("legal hold {}", status.s3_name()))
                }
                Operation::PutObjectRetention(spec) => {
                    let sent = client
                        .put_object_retention()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version)
                        .retention(retention(spec))
                        .bypass_governance_retention(spec.bypass_governance)
                        .send()
                        .await;
                    outcome(
                        sent,
                        format!(
                            "retention {} until {}",
                            spec.mode.s3_name(),
                            spec.retain_until.to_rfc3339()
                        ),
                    )
                }
                Operation::PutObjectAcl(spec) => {
                    let request = client
                        .put_object_acl()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version);
                    let request = match spec {
                        AclSpec::Canned(canned) => request.acl(canned_acl(*canned)),
                        AclSpec::Policy {
                            owner_id,
                            owner_display_name,
                            grants,
                        } => match policy(owner_id, owner_display_name.as_deref(), grants) {
                            Ok(policy) => request.access_control_policy(policy),
                            Err(problem) => return invalid(problem),
                        },
                    };
                    outcome(request.send().await, "ACL replaced")
                }
                Operation::InitiateRestoreObject(spec) => {
                    let restore = match restore_request(spec) {
                        Ok(restore) => restore,
                        Err(problem) => return invalid(problem),
                    };
                    let sent = client
                        .restore_object()
                        .bucket(bucket)
                        .key(key)
                        .set_version_id(version)
                        .restore_request(restore)
                        .send()
                        .await;
                    outcome(sent, "restore initiated")
                }
                Operation::ComputeObjectChecksum { .. }
                | Operation::DeleteObject
                | Operation::Invoke(_)
                | Operation::PutObjectCopy(_) => {
                    TaskOutcome::failure(500, "InternalError", "not an object-state operation")
                }
            }
        })
    }
}

/// A request the SDK refused to build (a value the job's validation
/// should already have refused).
fn invalid(problem: impl std::fmt::Display) -> TaskOutcome {
    TaskOutcome::failure(400, "InvalidRequest", problem.to_string())
}

/// The task's outcome from S3's answer: its error code and HTTP status on a
/// failure. Throttling, 5xx and failures with no answer at all (timeouts,
/// connections) are retried.
fn outcome<T, E>(
    sent: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    done: impl Into<String>,
) -> TaskOutcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let error = match sent {
        Ok(_) => return TaskOutcome::success(200, done),
        Err(error) => error,
    };
    let status = error
        .raw_response()
        .map(|response| i32::from(response.status().as_u16()));
    let message = error
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
    match (status, error.code()) {
        (Some(status), code) => {
            let code = code
                .map(str::to_owned)
                .unwrap_or_else(|| status_code_name(status));
            let failure = TaskOutcome::failure(status, &code, message);
            if status >= 500 || status == 429 || code == "SlowDown" {
                failure.retryable()
            } else {
                failure
            }
        }
        (None, _) => TaskOutcome::failure(503, "ServiceUnavailable", message).retryable(),
    }
}

/// S3's code for a status that came without an error body.
fn status_code_name(status: i32) -> String {
    match status {
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        503 => "SlowDown",
        500..=599 => "InternalError",
        _ => "UnknownError",
    }
    .to_owned()
}

fn tag_set(tags: &[ObjectTag]) -> Result<Tagging, aws_sdk_s3::error::BuildError> {
    let tags = tags
        .iter()
        .map(|tag| Tag::builder().key(&tag.key).value(&tag.value).build())
        .collect::<Result<Vec<_>, _>>()?;
    Tagging::builder().set_tag_set(Some(tags)).build()
}

fn legal_hold(status: LegalHold) -> ObjectLockLegalHold {
    ObjectLockLegalHold::builder()
        .status(match status {
            LegalHold::On => ObjectLockLegalHoldStatus::On,
            LegalHold::Off => ObjectLockLegalHoldStatus::Off,
        })
        .build()
}

fn retention(spec: &RetentionSpec) -> ObjectLockRetention {
    ObjectLockRetention::builder()
        .mode(match spec.mode {
            RetentionMode::Governance => ObjectLockRetentionMode::Governance,
            RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
        })
        .retain_until_date(S3DateTime::from_secs(spec.retain_until.timestamp()))
        .build()
}

fn canned_acl(canned: CannedAcl) -> ObjectCannedAcl {
    match canned {
        CannedAcl::Private => ObjectCannedAcl::Private,
        CannedAcl::PublicRead => ObjectCannedAcl::PublicRead,
        CannedAcl::PublicReadWrite => ObjectCannedAcl::PublicReadWrite,
        CannedAcl::AwsExecRead => ObjectCannedAcl::AwsExecRead,
        CannedAcl::AuthenticatedRead => ObjectCannedAcl::AuthenticatedRead,
        CannedAcl::BucketOwnerRead => ObjectCannedAcl::BucketOwnerRead,
        CannedAcl::BucketOwnerFullControl => ObjectCannedAcl::BucketOwnerFullControl,
    }
}

fn policy(
    owner_id: &str,
    owner_display_name: Option<&str>,
    grants: &[AclGrant],
) -> Result<AccessControlPolicy, aws_sdk_s3::error::BuildError> {
    let grants = grants
        .iter()
        .map(|grant| {
            let grantee = match &grant.grantee {
                Grantee::CanonicalUser(id) => {
                    S3Grantee::builder().r#type(Type::CanonicalUser).id(id)
                }
                Grantee::Email(email) => S3Grantee::builder()
                    .r#type(Type::AmazonCustomerByEmail)
                    .email_address(email),
                Grantee::Group(uri) => S3Grantee::builder().r#type(Type::Group).uri(uri),
            };
            let grantee = grantee
                .set_display_name(grant.display_name.clone())
                .build()?;
            Ok(Grant::builder()
                .grantee(grantee)
                .permission(match grant.permission {
                    AclPermission::FullControl => Permission::FullControl,
                    AclPermission::Read => Permission::Read,
                    AclPermission::Write => Permission::Write,
                    AclPermission::ReadAcp => Permission::ReadAcp,
                    AclPermission::WriteAcp => Permission::WriteAcp,
                })
                .build())
        })
        .collect::<Result<Vec<_>, aws_sdk_s3::error::BuildError>>()?;
    Ok(AccessControlPolicy::builder()
        .owner(
            Owner::builder()
                .id(owner_id)
                .set_display_name(owner_display_name.map(str::to_owned))
                .build(),
        )
        .set_grants(Some(grants))
        .build())
}

fn restore_request(spec: &RestoreSpec) -> Result<RestoreRequest, aws_sdk_s3::error::BuildError> {
    let tier = match spec.tier {
        GlacierJobTier::Bulk => Tier::Bulk,
        GlacierJobTier::Standard => Tier::Standard,
    };
    Ok(RestoreRequest::builder()
        .set_days(spec.expiration_in_days.map(|days| days as i32))
        .glacier_job_parameters(GlacierJobParameters::builder().tier(tier).build()?)
        .build())
}
