//! The tonic implementation of `batchops.v1.JobService`.

use std::{pin::Pin, sync::Arc, time::Duration};

use chrono::Utc;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use super::auth::Access;
use super::page_token::{self, PageTokens};
use super::watch::{self, WatchRequest};
use super::{ApiError, validate};
use crate::contract;
use crate::domain::text::clip;
use crate::domain::{Command, Effect, JobId, JobStatus};
use crate::engine::{TaskGate, Wakers};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::objects::Buckets;
use crate::objects::invoke::{Allowlist, Functions};
use crate::objects::report::ReportReadError;
use crate::proto::{self as pb, job_service_server::JobService};
use crate::store::notifications::NotificationEndpoint;
use crate::store::tasks::ResultFilter;
use crate::store::{JobCache, Store, jobs, pages};

/// Events read per page while streaming a history.
const HISTORY_PAGE: usize = 500;

/// The `JobService` over one store, and what it works with.
#[derive(Clone)]
pub struct JobApi {
    /// The event store.
    pub store: Store,
    /// The endpoints Invoke jobs may call, checked at CreateJob.
    pub invoke_allowlist: Arc<Allowlist>,
    /// Wake-ups of this process's engine loops.
    pub wakers: Arc<Wakers>,
    /// The chunks running in this process, stopped before a command that
    /// takes their job out of Active returns.
    pub gate: Arc<TaskGate>,
    /// This process's notification fan-out, for WatchJobs.
    pub notifier: Notifier,
    /// How often an idle WatchJobs stream gets a heartbeat.
    pub watch_heartbeat: Duration,
    /// Prometheus metrics of this process.
    pub metrics: Arc<Metrics>,
    /// Tokens, their grants and the per-caller stream limits.
    pub access: Arc<Access>,
    /// Signs and checks ListJobs page tokens.
    pub page_tokens: PageTokens,
    /// The Lambda functions Invoke jobs may name, and their endpoints.
    pub functions: Arc<Functions>,
    /// The object store, for reading completion reports back.
    pub buckets: Buckets,
    /// Jobs as last read, so that reading one again skips its unchanged state.
    pub seen_jobs: Arc<JobCache>,
    /// Where the status changes of jobs that name no endpoint of their own
    /// are POSTed (`--notification-endpoint`), if anywhere.
    pub default_notification_endpoint: Option<String>,
}

impl JobApi {
    async fn run(
        &self,
        account_id: &str,
        job_id: &str,
        command: Command,
    ) -> Result<crate::domain::Job, ApiError> {
        let account = validate::account_id(account_id)?;
        let id = validate::job_id(job_id)?;
        let mut client = self.store.client().await?;
        let (job, decision) =
            jobs::execute(&mut client, id, Some(&account), &command, Utc::now()).await?;
        // Before the caller hears back, no task of a job that left Active
        // starts here any more (other processes learn it from the log).
        if decision.effects.contains(&Effect::StopTaskStarts) {
            self.gate.stop(job.id);
        }
        // Only the loops the change gives work to: a thousand commands a
        // second need not make the engine look a thousand times.
        if decision.reschedules() {
            Wakers::wake(&self.wakers.scheduler);
        }
        if decision.awaits_finisher() {
            Wakers::wake(&self.wakers.finisher);
        }
        Ok(job)
    }

    async fn describe(
        &self,
        account_id: &str,
        job_id: &str,
    ) -> Result<Arc<crate::domain::Job>, ApiError> {
        let account = validate::account_id(account_id)?;
        let id = validate::job_id(job_id)?;
        let client = self.store.client().await?;
        Ok(self.seen_jobs.load(&client, id, Some(&account)).await?)
    }
}

type HistoryStream = Pin<Box<dyn Stream<Item = Result<pb::GetJobHistoryResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Frame, Status>> + Send>>;
type ResultsStream =
    Pin<Box<dyn Stream<Item = Result<pb::ListJobTaskResultsResponse, Status>> + Send>>;

type ReportFileStream =
    Pin<Box<dyn Stream<Item = Result<pb::GetJobReportFileResponse, Status>> + Send>>;

/// The largest chunk of a report file in one GetJobReportFile message.
const REPORT_CHUNK: usize = 64 * 1024;

/// Task numbers read per page while streaming results.
const RESULTS_PAGE: usize = 1000;

#[tonic::async_trait]
impl JobService for JobApi {
    #[instrument(skip_all, fields(account_id = %clip(&request.get_ref().account_id)))]
    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let grant = self.access.bucket_grant(&request);
        let mut message = request.into_inner();
        validate::resolve_function(&mut message, &self.functions)?;
        let (spec, fingerprint) =
            validate::create_job(&message, &self.invoke_allowlist, grant.as_ref())?;
        if let (Some(kept), Some(_)) = (spec.operation.needs_s3(), self.buckets.directory()) {
            return Err(ApiError::invalid(
                "operation",
                format!(
                    "needs an S3 object store (--object-store s3://…): this server's directory store keeps no {kept}"
                ),
            )
            .into());
        }
        let mut client = self.store.client().await.map_err(ApiError::from)?;
        let endpoint = match (
            &spec.notification_endpoint,
            &self.default_notification_endpoint,
        ) {
            (Some(own), _) => Some(NotificationEndpoint {
                url: own,
                operator: false,
            }),
            (None, Some(default)) => Some(NotificationEndpoint {
                url: default,
                operator: true,
            }),
            (None, None) => None,
        };
        let (id, created) = jobs::create(
            &mut client,
            JobId::generate(),
            &spec,
            &fingerprint,
            endpoint,
            Utc::now(),
        )
        .await
        .map_err(ApiError::from)?;
        if created {
            info!(job_id = %id, "job created");
            Wakers::wake(&self.wakers.preparer);
        }
        Ok(Response::new(pb::CreateJobResponse {
            job_id: id.to_string(),
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn describe_job(
        &self,
        request: Request<pb::DescribeJobRequest>,
    ) -> Result<Response<pb::DescribeJobResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let job = self.describe(&request.account_id, &request.job_id).await?;
        Ok(Response::new(pb::DescribeJobResponse {
            job: Some(contract::job_to_proto(&job, Utc::now())),
        }))
    }

    #[instrument(skip_all, fields(account_id = %clip(&request.get_ref().account_id)))]
    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let account = validate::account_id(&request.account_id)?;
        let statuses = request
            .statuses
            .iter()
            .enumerate()
            .map(|(i, s)| validate::job_status(&format!("statuses[{i}]"), *s))
            .collect::<Result<Vec<_>, _>>()?;
        let page_size = validate::page_size(request.page_size)?;
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let scope = page_token::list_jobs_scope(&account.0, &names);
        let after = self.page_tokens.open(&scope, &request.page_token)?;
        let client = self.store.client().await.map_err(ApiError::from)?;
        let page = jobs::list(&client, &account, &statuses, page_size, after)
            .await
            .map_err(ApiError::from)?;
        let now = Utc::now();
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page
                .jobs
                .iter()
                .map(|job| contract::job_to_list_proto(job, now))
                .collect(),
            next_page_token: page
                .next
                .map(|cursor| self.page_tokens.seal(&scope, cursor))
                .unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn update_job_status(
        &self,
        request: Request<pb::UpdateJobStatusRequest>,
    ) -> Result<Response<pb::UpdateJobStatusResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let reason = validate::status_update_reason(&request.status_update_reason)?;
        let command =
            match validate::job_status("requested_job_status", request.requested_job_status)? {
                JobStatus::Ready => Command::Confirm { reason },
                JobStatus::Cancelled => Command::Cancel { reason },
                other => {
                    return Err(ApiError::invalid(
                        "requested_job_status",
                        format!("must be JOB_STATUS_READY or JOB_STATUS_CANCELLED, got {other}"),
                    )
                    .into());
                }
            };
        let job = self
            .run(&request.account_id, &request.job_id, command)
            .await?;
        info!(job_id = %job.id, status = %job.status, "job status updated");
        Ok(Response::new(pb::UpdateJobStatusResponse {
            job_id: job.id.to_string(),
            status: contract::status_to_proto(job.status) as i32,
            status_update_reason: job.status_update_reason.unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn update_job_priority(
        &self,
        request: Request<pb::UpdateJobPriorityRequest>,
    ) -> Result<Response<pb::UpdateJobPriorityResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let priority = validate::priority(request.priority)?;
        let job = self
            .run(
                &request.account_id,
                &request.job_id,
                Command::ChangePriority { priority },
            )
            .await?;
        Ok(Response::new(pb::UpdateJobPriorityResponse {
            job_id: job.id.to_string(),
            priority: job.priority,
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn put_job_tagging(
        &self,
        request: Request<pb::PutJobTaggingRequest>,
    ) -> Result<Response<pb::PutJobTaggingResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let tags = validate::tags(&request.tags)?;
        let job = self
            .run(
                &request.account_id,
                &request.job_id,
                Command::ReplaceTags { tags },
            )
            .await?;
        Ok(Response::new(pb::PutJobTaggingResponse {
            tags: contract::tags_to_proto(&job.tags),
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn get_job_tagging(
        &self,
        request: Request<pb::GetJobTaggingRequest>,
    ) -> Result<Response<pb::GetJobTaggingResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let job = self.describe(&request.account_id, &request.job_id).await?;
        Ok(Response::new(pb::GetJobTaggingResponse {
            tags: contract::tags_to_proto(&job.tags),
        }))
    }

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn delete_job_tagging(
        &self,
        request: Request<pb::DeleteJobTaggingRequest>,
    ) -> Result<Response<pb::DeleteJobTaggingResponse>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let request = request.get_ref();
        let job = self
            .run(
                &request.account_id,
                &request.job_id,
                Command::ReplaceTags { tags: vec![] },
            )
            .await?;
        Ok(Response::new(pb::DeleteJobTaggingResponse {
            tags: contract::tags_to_proto(&job.tags),
        }))
    }

    type WatchJobsStream = WatchStream;

    #[instrument(skip_all, fields(account_id = %clip(&request.get_ref().account_id)))]
    async fn watch_jobs(
        &self,
        request: Request<pb::WatchJobsRequest>,
    ) -> Result<Response<Self::WatchJobsStream>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let permit = self.access.open_stream(&request)?;
        let request = request.into_inner();
        let account = validate::account_id(&request.account_id)?;
        if request.job_ids.len() > 100 {
            return Err(ApiError::invalid("job_ids", "at most 100 job ids").into());
        }
        let job_ids = request
            .job_ids
            .iter()
            .enumerate()
            .map(|(i, id)| validate::job_id_field(&format!("job_ids[{i}]"), id))
            .collect::<Result<Vec<_>, _>>()?;
        if request.after_position.is_some_and(|p| p < 0) {
            return Err(ApiError::invalid("after_position", "must be ≥ 0").into());
        }
        let watch = WatchRequest {
            account,
            job_ids,
            after: request.after_position,
            heartbeat: self.watch_heartbeat,
        };
        let open = self.metrics.watch_opened();
        Ok(Response::new(Box::pin(watch::WatchStream::new(
            self.store.clone(),
            &self.notifier,
            self.seen_jobs.clone(),
            watch,
            (open, permit),
        ))))
    }

    type ListJobTaskResultsStream = ResultsStream;

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn list_job_task_results(
        &self,
        request: Request<pb::ListJobTaskResultsRequest>,
    ) -> Result<Response<Self::ListJobTaskResultsStream>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let permit = self.access.open_stream(&request)?;
        let request = request.into_inner();
        let error_code = validate::error_code_filter(&request.error_code)?;
        // Refuses unknown jobs and other accounts' jobs before the stream starts.
        let job = self.describe(&request.account_id, &request.job_id).await?;
        let filter = ResultFilter {
            succeeded: (request.only_failed || error_code.is_some()).then_some(false),
            error_code,
        };
        let (sender, receiver) = mpsc::channel(64);
        let store = self.store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let wrap = |result| pb::ListJobTaskResultsResponse {
                result: Some(result),
            };
            if let Err(error) =
                stream_results(store, job.id, job.progress.total, filter, wrap, &sender).await
            {
                let _ = sender.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type GetJobReportFileStream = ReportFileStream;

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn get_job_report_file(
        &self,
        request: Request<pb::GetJobReportFileRequest>,
    ) -> Result<Response<Self::GetJobReportFileStream>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let permit = self.access.open_stream(&request)?;
        let request = request.into_inner();
        let key = validate::report_file_key(&request.key)?;
        // Refuses unknown jobs and other accounts' jobs before anything is read.
        let job = self.describe(&request.account_id, &request.job_id).await?;
        let Some(manifest) = &job.report_location else {
            return Err(ApiError::NoReport(format!(
                "job {} has no completion report (status {})",
                job.id, job.status
            ))
            .into());
        };
        let chunks = crate::objects::report::report_file(&self.buckets, manifest, key)
            .await
            .map_err(ApiError::from)?;
        let stream = chunks
            .map(|chunk| {
                chunk.map_err(|error| Status::from(ApiError::from(ReportReadError::from(error))))
            })
            .flat_map(|chunk| {
                futures::stream::iter(match chunk {
                    // Messages of at most 64 KiB, whatever the store's chunks are.
                    Ok(bytes) => (0..bytes.len())
                        .step_by(REPORT_CHUNK)
                        .map(|start| {
                            Ok(pb::GetJobReportFileResponse {
                                data: bytes[start..bytes.len().min(start + REPORT_CHUNK)].to_vec(),
                            })
                        })
                        .collect::<Vec<_>>(),
                    Err(status) => vec![Err(status)],
                })
            })
            .map(move |message| {
                let _held = &permit;
                message
            });
        Ok(Response::new(Box::pin(stream)))
    }

    type GetJobHistoryStream = HistoryStream;

    #[instrument(skip_all, fields(job_id = %clip(&request.get_ref().job_id)))]
    async fn get_job_history(
        &self,
        request: Request<pb::GetJobHistoryRequest>,
    ) -> Result<Response<Self::GetJobHistoryStream>, Status> {
        self.access
            .authorize(&request, &request.get_ref().account_id)?;
        let permit = self.access.open_stream(&request)?;
        let request = request.into_inner();
        if request.after_sequence < 0 {
            return Err(ApiError::invalid("after_sequence", "must be ≥ 0").into());
        }
        // Refuses unknown jobs and other accounts' jobs before the stream starts.
        let job = self.describe(&request.account_id, &request.job_id).await?;
        let (id, tasks) = (job.id, job.progress.total);
        let after = request.after_sequence as u64;
        let (sender, receiver) = mpsc::channel(64);
        let store = self.store.clone();
        let include_task_results = request.include_task_results;
        tokio::spawn(async move {
            let _permit = permit;
            let mut outcome = stream_history(store.clone(), id, after, &sender).await;
            if outcome.is_ok() && include_task_results {
                outcome = stream_results(
                    store,
                    id,
                    tasks,
                    ResultFilter::default(),
                    |result| pb::GetJobHistoryResponse {
                        event: None,
                        task_result: Some(result),
                    },
                    &sender,
                )
                .await;
            }
            if let Err(error) = outcome {
                let _ = sender.send(Err(error.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Sends the task results of a job of `tasks` tasks in task order, a page at a time (a page's
/// read holds a connection; sending it to a slow client holds none).
async fn stream_results<M>(
    store: Store,
    id: JobId,
    tasks: u64,
    filter: ResultFilter,
    wrap: impl Fn(pb::TaskResult) -> M,
    sender: &mpsc::Sender<Result<M, Status>>,
) -> Result<(), ApiError> {
    let pages = pages::task_results(&store, id, filter, tasks, RESULTS_PAGE);
    futures::pin_mut!(pages);
    while let Some(page) = pages.try_next().await? {
        for (object, result) in &page {
            let message = wrap(contract::task_result_to_proto(object, result));
            if sender.send(Ok(message)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Sends a job's events in sequence order. Events before `after` are folded
/// but not sent, so status changes still name their previous status.
async fn stream_history(
    store: Store,
    id: JobId,
    after: u64,
    sender: &mpsc::Sender<Result<pb::GetJobHistoryResponse, Status>>,
) -> Result<(), ApiError> {
    let mut folder = contract::HistoryFolder::new();
    let pages = pages::job_events(&store, id, 0, HISTORY_PAGE);
    futures::pin_mut!(pages);
    while let Some(page) = pages.try_next().await? {
        for recorded in &page {
            let event = folder.convert(recorded);
            if recorded.sequence <= after {
                continue;
            }
            let message = pb::GetJobHistoryResponse {
                event: Some(event),
                task_result: None,
            };
            if sender.send(Ok(message)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
