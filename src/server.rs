//! Runs batchops: connects and migrates the database, starts the engine and
//! serves gRPC until the shutdown future resolves; then stops accepting
//! calls, lets in-flight chunks finish and returns.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, JobApi};
use crate::config::{ConfigError, DatabaseConfig, ServeConfig};
use crate::engine::{Engine, Wakers};
use crate::notify::Notifier;
use crate::objects::{Buckets, StoreUrlError, operations::OperationContext};
use crate::proto;
use crate::proto::job_service_server::JobServiceServer;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    ObjectStore(#[from] StoreUrlError),
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
}

/// Connects to the database and applies pending migrations.
pub async fn open_store(config: &DatabaseConfig) -> Result<Store, ServeError> {
    let store = Store::connect(&config.url()?, config.database_pool_size.max(2)).await?;
    let applied = store.migrate().await?;
    info!(applied, "database migrated");
    Ok(store)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let store = open_store(&config.database).await?;
    let buckets = Buckets::open(&config.object_store_url()?)?;
    let allowlist = config.invoke_allowlist()?;
    let operations = OperationContext::new(buckets, allowlist);
    let stop_engine = CancellationToken::new();
    let stopping = CancellationToken::new();
    let wakers = Arc::new(Wakers::default());
    let engine = Engine::new(
        store.clone(),
        operations.clone(),
        config.engine(),
        wakers.clone(),
    );
    let engine = (!config.no_engine).then(|| tokio::spawn(engine.run(stop_engine.clone())));
    info!(address = %listener.local_addr().map_err(|e| ServeError::Store(StoreError::Unavailable(Box::new(e))))?, "serving");
    let (reporter, health) = tonic_health::server::health_reporter();
    api::health::start(reporter, store.clone(), stopping.clone()).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServeError::Reflection)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(ServeError::Reflection)?;
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(JobServiceServer::new(JobApi::new(
            store.clone(),
            operations.invoke_allowlist.clone(),
            wakers,
            Notifier::start(store, stop_engine.clone()),
            Duration::from_millis(config.watch_heartbeat_ms),
            stopping.clone(),
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            shutdown.await;
            // Watch streams never end on their own: end them so that the
            // graceful shutdown can finish.
            stopping.cancel();
        })
        .await;
    info!("shutting down");
    stop_engine.cancel();
    if let Some(engine) = engine {
        let _ = engine.await;
    }
    served?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
