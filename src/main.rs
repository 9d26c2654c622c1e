//! The `batchops` binary: parses the configuration and calls into the library.

use std::process::ExitCode;

use batchops::cluster::Ownership;
use batchops::command_line::{CommandLine, LogFormat};
use batchops::server::{self, Database};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match batchops::command_line::parse() {
        Ok(cli) => cli,
        Err(batchops::command_line::CommandLineError::Arguments(error)) => error.exit(),
        Err(error) => {
            eprintln!("batchops: {error}");
            return ExitCode::from(2);
        }
    };
    if let CommandLine::Client(command) = cli.command {
        return batchops::cli::run(command).await;
    }
    init_logging(cli.log_format);
    let outcome = match cli.command {
        CommandLine::Client(_) => Ok(()),
        CommandLine::Serve(config) => match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => server::serve(config, listener, server::shutdown_signal())
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(format!("cannot listen on {}: {error}", config.listen)),
        },
        CommandLine::Migrate(database) => {
            match Database::open(&database, Ownership::Shared).await {
                Ok(database) => database.close().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            }
        }
        CommandLine::Replay(config) => return replay(config).await,
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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs `batchops replay` and prints what it found; exit code 1 on differences.
async fn replay(config: batchops::config::ReplayConfig) -> ExitCode {
    let report = match Database::open(&config.database, Ownership::Shared).await {
        Ok(database) => {
            let report = batchops::audit::replay(&database.store, config.repair)
                .await
                .map_err(|e| e.to_string());
            let _ = database.close().await;
            report
        }
        Err(error) => Err(error.to_string()),
    };
    match report {
        Err(message) => {
            eprintln!("batchops: {message}");
            ExitCode::from(2)
        }
        Ok(report) => {
            for (job, fields) in &report.differences {
                println!(
                    "job {job}: stored projection differs from the log in {}",
                    fields.join(", ")
                );
            }
            for job in &report.missing_projections {
                println!("job {job}: has events but no projection");
            }
            println!(
                "{} jobs replayed, {} differ, {} without projection, {} repaired",
                report.jobs_checked,
                report.differences.len(),
                report.missing_projections.len(),
                report.repaired
            );
            if report.is_clean() || (config.repair && report.missing_projections.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
