//! Prometheus metrics, served in the text exposition format on
//! `--metrics-listen` (`GET /metrics`).
//!
//! Counters and histograms are updated where things happen (tasks in the
//! workers, RPCs in a tower layer around the gRPC server, watch streams in
//! the API); gauges of state that lives in PostgreSQL (jobs by status) or in
//! the pool (connections in use) are read at scrape time, so they are never
//! stale and cost nothing between scrapes.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `batchops_jobs` | gauge | `status` |
//! | `batchops_tasks_total` | counter | `operation`, `outcome` (`succeeded`/`failed`) |
//! | `batchops_task_duration_seconds` | histogram | `operation` |
//! | `batchops_task_retries_total` | counter | `operation` |
//! | `batchops_rpc_requests_total` | counter | `method`, `code` |
//! | `batchops_rpc_duration_seconds` | histogram | `method` |
//! | `batchops_watch_streams` | gauge | |
//! | `batchops_db_pool_connections` | gauge | `state` (`in_use`/`idle`/`max`) |
//! | `batchops_notifications_total` | counter | `outcome` (`delivered`/`failed`) |
//! | `batchops_notification_lag_events` | gauge | |
//! | `batchops_notification_lag_seconds` | gauge | |

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::contract::code_name;
use crate::domain::{JobStatus, Operation};
use crate::store::{Store, jobs, notifications};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    jobs: Family<StatusLabels, Gauge>,
    tasks: Family<TaskLabels, Counter>,
    task_duration: Histograms<OperationLabels>,
    task_retries: Family<OperationLabels, Counter>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Histograms<MethodLabels>,
    watch_streams: Gauge,
    pool: Family<PoolLabels, Gauge>,
    notifications: Family<OutcomeLabels, Counter>,
    notification_lag_events: Gauge,
    notification_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// 1 ms to about 65 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            jobs: Family::default(),
            tasks: Family::default(),
            task_duration: Family::new_with_constructor(latency_histogram),
            task_retries: Family::default(),
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            watch_streams: Gauge::default(),
            pool: Family::default(),
            notifications: Family::default(),
            notification_lag_events: Gauge::default(),
            notification_lag_seconds: Gauge::default(),
            registry: Registry::with_prefix("batchops"),
        };
        let registry = &mut metrics.registry;
        registry.register("jobs", "Jobs by status", metrics.jobs.clone());
        registry.register(
            "tasks",
            "Tasks finished by this process, by operation and outcome",
            metrics.tasks.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Time to run one task, retries included",
            metrics.task_duration.clone(),
        );
        registry.register(
            "task_retries",
            "Task attempts repeated after a transient failure",
            metrics.task_retries.clone(),
        );
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            metrics.rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from a gRPC call's arrival to its response headers (for unary calls, the whole call)",
            metrics.rpc_duration.clone(),
        );
        registry.register(
            "watch_streams",
            "Open WatchJobs streams",
            metrics.watch_streams.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections in use, idle, and the pool's maximum",
            metrics.pool.clone(),
        );
        registry.register(
            "notifications",
            "Status webhook POSTs by this process, by outcome",
            metrics.notifications.clone(),
        );
        registry.register(
            "notification_lag_events",
            "Job events after the status webhook checkpoints of jobs whose delivery is not done, over every process",
            metrics.notification_lag_events.clone(),
        );
        registry.register(
            "notification_lag_seconds",
            "Age of the oldest job event not yet delivered to its status webhook",
            metrics.notification_lag_seconds.clone(),
        );
        metrics
    }

    /// Counts one status webhook POST.
    pub fn notification_sent(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records one finished task.
    pub fn task_finished(&self, operation: &Operation, succeeded: bool, took: Duration) {
        let operation = operation_label(operation);
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.tasks
            .get_or_create(&TaskLabels { operation, outcome })
            .inc();
        self.task_duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Counts a retry of a task of `operation`.
    pub fn task_retried(&self, operation: &Operation) {
        self.task_retries
            .get_or_create(&OperationLabels {
                operation: operation_label(operation),
            })
            .inc();
    }

    /// Counts an open watch stream until the returned guard drops.
    pub fn watch_opened(self: &Arc<Self>) -> WatchGuard {
        self.watch_streams.inc();
        WatchGuard(self.clone())
    }

    fn rpc_finished(&self, method: String, code: String, took: Duration) {
        self.rpc_duration
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(took.as_secs_f64());
        self.rpc_requests
            .get_or_create(&RpcLabels { method, code })
            .inc();
    }

    /// The text exposition, with the gauges read from `store` first.
    pub async fn render(&self, store: &Store) -> String {
        match store.client().await {
            Ok(client) => match jobs::count_by_status(&client).await {
                Ok(counts) => {
                    for status in JobStatus::ALL {
                        let count = counts
                            .iter()
                            .find(|(s, _)| *s == status)
                            .map_or(0, |(_, n)| *n);
                        self.jobs
                            .get_or_create(&StatusLabels {
                                status: status.as_str().to_owned(),
                            })
                            .set(count);
                    }
                }
                Err(error) => warn!(%error, "metrics: jobs by status unavailable"),
            },
            Err(error) => warn!(%error, "metrics: database unavailable"),
        }
        match store.client().await {
            Ok(client) => match notifications::lag(&client).await {
                Ok((events, seconds)) => {
                    self.notification_lag_events.set(events);
                    self.notification_lag_seconds.set(seconds);
                }
                Err(error) => warn!(%error, "metrics: notification lag unavailable"),
            },
            Err(error) => warn!(%error, "metrics: database unavailable"),
        }
        let pool = store.pool_status();
        for (state, value) in [
            ("in_use", pool.size.saturating_sub(pool.available)),
            ("idle", pool.available),
            ("max", pool.max_size),
        ] {
            self.pool
                .get_or_create(&PoolLabels { state })
                .set(value as i64);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!(%error, "metrics could not be encoded");
        }
        text
    }
}

/// Keeps `batchops_watch_streams` counting one stream while it lives.
pub struct WatchGuard(Arc<Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.watch_streams.dec();
    }
}

fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::ComputeObjectChecksum { .. } => "compute_object_checksum",
        Operation::DeleteObject => "delete_object",
        Operation::Invoke(_) => "invoke",
        Operation::PutObjectCopy(_) => "put_object_copy",
        Operation::PutObjectTagging { .. } => "put_object_tagging",
        Operation::DeleteObjectTagging => "delete_object_tagging",
        Operation::PutObjectLegalHold { .. } => "put_object_legal_hold",
        Operation::PutObjectRetention(_) => "put_object_retention",
        Operation::PutObjectAcl(_) => "put_object_acl",
        Operation::InitiateRestoreObject(_) => "initiate_restore_object",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    shutdown: CancellationToken,
) {
    let handler = move |request, _peer| {
        let (metrics, store) = (metrics.clone(), store.clone());
        async move { respond(request, &metrics, &store).await }
    };
    crate::http1::serve("metrics", listener, handler, shutdown).await;
}

async fn respond(
    request: http::Request<hyper::body::Incoming>,
    metrics: &Metrics,
    store: &Store,
) -> http::Response<Full<Bytes>> {
    let reply = |status: http::StatusCode, content_type: &str, body: String| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    match (request.method(), request.uri().path()) {
        (&http::Method::GET, "/metrics") => reply(
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(store).await,
        ),
        (&http::Method::GET, _) => reply(
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are at /metrics\n".into(),
        ),
        _ => reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ),
    }
}

/// A tower layer that records every gRPC call's method, status code and
/// latency.
#[derive(Clone)]
pub(crate) struct RpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service wrapped by [`RpcMetricsLayer`].
#[derive(Clone)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                // A call that failed before any message carries its status
                // in the headers; otherwise it is in the trailers, and the
                // call got as far as sending its response: OK.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.rpc_finished(method, code_name(code), started.elapsed());
            response
        })
    }
}

/// The method's path when it is one batchops serves, else `other`, so that
/// arbitrary paths cannot create unbounded label values.
fn method_label(path: &str) -> String {
    const SERVED: &[&str] = &[
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    let job_service = path
        .strip_prefix("/batchops.v1.JobService/")
        .is_some_and(|method| JOB_SERVICE_METHODS.contains(&method));
    if job_service || SERVED.contains(&path) {
        path.trim_start_matches('/').to_owned()
    } else {
        "other".to_owned()
    }
}

const JOB_SERVICE_METHODS: &[&str] = &[
    "CreateJob",
    "DescribeJob",
    "ListJobs",
    "UpdateJobStatus",
    "UpdateJobPriority",
    "PutJobTagging",
    "GetJobTagging",
    "DeleteJobTagging",
    "GetJobHistory",
    "WatchJobs",
    "ListJobTaskResults",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/batchops.v1.JobService/DescribeJob"),
            "batchops.v1.JobService/DescribeJob"
        );
        assert_eq!(method_label("/batchops.v1.JobService/Nope"), "other");
        assert_eq!(method_label("/x/y"), "other");
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
    }

    #[test]
    fn task_metrics_appear_in_the_exposition() {
        let metrics = Metrics::new();
        let checksum = Operation::ComputeObjectChecksum {
            algorithm: crate::domain::ChecksumAlgorithm::Sha256,
        };
        metrics.task_finished(&checksum, true, Duration::from_millis(3));
        metrics.task_finished(&checksum, false, Duration::from_millis(3));
        metrics.task_finished(&checksum, true, Duration::from_millis(3));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text.contains(
            "batchops_tasks_total{operation=\"compute_object_checksum\",outcome=\"succeeded\"} 2"
        ), "{text}");
        assert!(
            text.contains(
                "batchops_task_duration_seconds_count{operation=\"compute_object_checksum\"} 3"
            ),
            "{text}"
        );
    }
}
