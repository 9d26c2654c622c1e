//! The `batchops` binary: parses the configuration and calls into the library.

use std::process::ExitCode;

use batchops::config::{Cli, CommandLine, LogFormat};
use batchops::server;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let outcome = match cli.command {
        CommandLine::Serve(config) => match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => server::serve(config, listener, server::shutdown_signal())
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(format!("cannot listen on {}: {error}", config.listen)),
        },
        CommandLine::Migrate(database) => server::open_store(&database)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("batchops: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
