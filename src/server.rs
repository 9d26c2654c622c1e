//! Runs batchops: connects and migrates the database, starts the engine and
//! serves gRPC until the shutdown future resolves; then stops accepting
//! calls, lets in-flight chunks finish and returns.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::info;

use crate::api::auth::{Access, TokensFileError};
use crate::api::{self, JobApi};
use crate::cluster::{ClusterError, Ownership, PrivateCluster};
use crate::coalesce::Coalesced;
use crate::config::{ConfigError, DatabaseConfig, Listen, ServeConfig};
use crate::engine::{Engine, TaskGate, Wakers};
use crate::metrics::{Metrics, RpcMetricsLayer};
use crate::notify::Notifier;
use crate::objects::TaskOperation;
use crate::objects::operations::OperationContext;
use crate::objects::{Buckets, StoreUrlError};
use crate::proto;
use crate::proto::job_service_server::JobServiceServer;
use crate::store::{Store, StoreError};

/// Why the server cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The private cluster cannot be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The object store cannot be opened.
    #[error(transparent)]
    ObjectStore(#[from] StoreUrlError),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// An extra listener (metrics, S3 Control, console) cannot be bound.
    #[error("cannot listen for {service} on {address}: {source}")]
    Listen {
        /// What it would serve.
        service: &'static str,
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokensFileError),
    /// A TLS file cannot be read.
    #[error("cannot read {path}: {source}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reflection service cannot be built.
    #[error("reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
}

/// The migrated database and, when no URL was given, the private cluster
/// that holds it.
pub struct Database {
    /// The event store on the database.
    pub store: Store,
    cluster: Option<PrivateCluster>,
}

impl Database {
    /// Connects to the configured database, or starts the private cluster
    /// under the data directory when there is no URL, and applies pending
    /// migrations.
    pub async fn open(
        config: &DatabaseConfig,
        ownership: Ownership,
    ) -> Result<Database, ServeError> {
        let (url, cluster) = match config.url() {
            Some(url) => (url, None),
            None => {
                let (data_dir, bin_dir) =
                    (config.data_dir.clone(), config.postgres_bin_dir.clone());
                let cluster = tokio::task::spawn_blocking(move || {
                    PrivateCluster::start(&data_dir, bin_dir.as_deref(), ownership)
                })
                .await
                .map_err(|e| {
                    ServeError::Cluster(ClusterError::Program {
                        program: "cluster start".into(),
                        output: e.to_string(),
                    })
                })??;
                (cluster.database_url(), Some(cluster))
            }
        };
        let database = Database {
            store: Store::connect(&url, config.database_pool_size.max(2)).await?,
            cluster,
        };
        let applied = database.store.migrate().await?;
        info!(applied, "database migrated");
        Ok(database)
    }

    /// Closes the pool and stops the private cluster if this process runs it.
    pub async fn close(self) -> Result<(), ServeError> {
        drop(self.store);
        if let Some(cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .map_err(|e| {
                    ServeError::Cluster(ClusterError::Program {
                        program: "cluster stop".into(),
                        output: e.to_string(),
                    })
                })??;
        }
        Ok(())
    }
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(config, listener, shutdown, None).await
}

/// [`serve`], with every task running `replacement` instead of its job's
/// operation when one is given (benchmarks use a no-op).
pub async fn serve_with(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    replacement: Option<Arc<dyn TaskOperation>>,
) -> Result<(), ServeError> {
    let database = Database::open(&config.database, Ownership::Exclusive).await?;
    let outcome = serve_on(
        config,
        database.store.clone(),
        listener,
        shutdown,
        replacement,
    )
    .await;
    let closed = database.close().await;
    outcome.and(closed)
}

async fn serve_on(
    config: ServeConfig,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    replacement: Option<Arc<dyn TaskOperation>>,
) -> Result<(), ServeError> {
    let buckets = Buckets::open(&config.object_store_url()?)?;
    let allowlist = config.invoke_allowlist()?;
    let mut operations = OperationContext::new(buckets, allowlist, config.operation_limits());
    if let Some(replacement) = replacement {
        operations = operations.replaced_by(replacement);
    }
    let stop_engine = CancellationToken::new();
    let stopping = CancellationToken::new();
    let wakers = Arc::new(Wakers::default());
    let gate = Arc::new(TaskGate::default());
    let metrics = Arc::new(Metrics::new());
    let notifier = Notifier::start(store.clone(), stop_engine.clone());
    let watchers = notifier.clone();
    let engine = Engine::new(
        store.clone(),
        operations.clone(),
        config.engine(),
        wakers.clone(),
        gate.clone(),
        notifier.clone(),
        metrics.clone(),
    );
    let engine = (!config.no_engine).then(|| tokio::spawn(engine.run(stop_engine.clone())));
    let webhooks = (!config.no_engine).then(|| {
        tokio::spawn(crate::notify::webhooks::run(
            store.clone(),
            operations.invoke_allowlist.clone(),
            notifier.clone(),
            metrics.clone(),
            config.webhooks(),
            stop_engine.clone(),
        ))
    });
    if let Some(address) = config.metrics_listen {
        let metrics_listener = bind("metrics", address).await?;
        if let Ok(bound) = metrics_listener.local_addr() {
            info!(address = %bound, "serving metrics");
        }
        tokio::spawn(crate::metrics::serve(
            metrics_listener,
            metrics.clone(),
            store.clone(),
            stop_engine.clone(),
        ));
    }
    let max_streams = config.max_streams_per_caller as usize;
    let access = Arc::new(match &config.auth_tokens {
        Some(path) => Access::from_file(path, max_streams)?,
        None => Access::open(max_streams),
    });
    let page_tokens = {
        let client = store.client().await?;
        let key =
            crate::store::keys::shared_key(&client, api::page_token::KEY_NAME, rand::random())
                .await?;
        api::page_token::PageTokens::new(key)
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    api::health::start(reporter, store.clone(), stopping.clone()).await;
    // Reflection describes every service served, health checking included.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServeError::Reflection)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(ServeError::Reflection)?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let jobs = JobApi {
        store: store.clone(),
        invoke_allowlist: operations.invoke_allowlist.clone(),
        wakers,
        gate,
        notifier,
        watch_heartbeat: Duration::from_millis(config.watch_heartbeat_ms),
        metrics: metrics.clone(),
        access: access.clone(),
        page_tokens,
        functions: Arc::new(config.invoke_functions()?),
        buckets: operations.buckets.clone(),
        seen_jobs: Arc::new(crate::store::JobCache::default()),
        default_notification_endpoint: config.notification_endpoint.clone(),
    };
    if let Listen::On(address) = config.s3control_listen {
        let s3control_listener = bind("S3 Control", address).await?;
        if let Ok(address) = s3control_listener.local_addr() {
            info!(%address, "serving S3 Control");
        }
        tokio::spawn(api::s3control::serve(
            s3control_listener,
            api::s3control::S3Control {
                jobs: jobs.clone(),
                access: access.clone(),
                region: config.s3control_region.clone(),
                max_request_bytes: config.max_request_bytes as usize,
                rate: api::s3control::RateLimit::new(config.s3control_requests_per_second),
            },
            stopping.clone(),
        ));
    }
    if let Listen::On(address) = config.console_listen {
        let console_listener = bind("the console", address).await?;
        if let Ok(address) = console_listener.local_addr() {
            info!(%address, url = %format!("http://{address}/"), "serving console");
        }
        let access = access.clone();
        let grpc_web = tower::ServiceBuilder::new()
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(RpcMetricsLayer(metrics.clone()))
            .service(InterceptedService::new(
                JobServiceServer::new(jobs.clone())
                    .max_decoding_message_size(config.max_request_bytes as usize),
                move |request| access.authenticate(request),
            ));
        tokio::spawn(api::console::serve(
            console_listener,
            tower::util::BoxCloneService::new(grpc_web),
            stopping.clone(),
        ));
    }
    // Logged once everything is set up: clients (and tests) may act at once.
    info!(address = %listener.local_addr().map_err(|e| ServeError::Store(StoreError::Unavailable(Box::new(e))))?, "serving");
    let served = builder
        .layer(RpcMetricsLayer(metrics.clone()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            JobServiceServer::new(jobs)
                .max_decoding_message_size(config.max_request_bytes as usize),
            move |request| access.authenticate(request),
        ))
        .serve_with_incoming_shutdown(accepted(listener), async {
            shutdown.await;
            // Watch streams never end on their own: end them so that the
            // graceful shutdown can finish.
            stopping.cancel();
            watchers.stop_watchers();
        })
        .await;
    info!("shutting down");
    stop_engine.cancel();
    if let Some(engine) = engine {
        let _ = engine.await;
    }
    if let Some(webhooks) = webhooks {
        let _ = webhooks.await;
    }
    served?;
    Ok(())
}

/// A listener for `service` on `address`.
async fn bind(
    service: &'static str,
    address: std::net::SocketAddr,
) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen {
            service,
            address: address.to_string(),
            source,
        })
}

/// The server's TLS settings, when --tls-cert is given.
fn tls_config(config: &ServeConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::Tls {
            path: path.display().to_string(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

/// The listener's connections with Nagle's algorithm off: a response's
/// frames must not wait for the peer's delayed ACK (40 ms on Linux).
/// Frames queued together leave in one write instead ([`Coalesced`]).
fn accepted(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<Coalesced<tokio::net::TcpStream>>> {
    futures::StreamExt::map(TcpListenerStream::new(listener), |stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(Coalesced::new(stream))
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the server is still starting is not lost (nor fatal).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let next = |handler: Option<tokio::signal::unix::Signal>| async move {
                match handler {
                    Some(mut handler) => {
                        handler.recv().await;
                    }
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = next(terminate) => {}
                () = next(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
