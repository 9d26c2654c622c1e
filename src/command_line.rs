//! The `batchops` command line: the server's commands (`serve`, `migrate`,
//! `replay`, configured by [`crate::config`]) beside the client's
//! ([`crate::cli`]), with settings from flags, `BATCHOPS_*` environment
//! variables and an optional TOML file (`--config` or `BATCHOPS_CONFIG`), in
//! that order of precedence, over the built-in defaults. The file's keys are
//! the flag names with underscores (`max_active_jobs = 8`); its values become
//! the flags' defaults.

use std::path::Path;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{DatabaseConfig, ReplayConfig, ServeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "batchops",
    version,
    about = "Event-sourced batch operations over object storage"
)]
/// The `batchops` command line.
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: CommandLine,
    /// A TOML file of settings (keys are flag names with underscores).
    #[arg(long, global = true, env = "BATCHOPS_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "BATCHOPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How the server writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `batchops` commands.
#[derive(Debug, Subcommand)]
pub enum CommandLine {
    /// Run the gRPC server and the engine.
    Serve(ServeConfig),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseConfig),
    /// Rebuild every job's projection from the event log and report any
    /// difference from what is stored (exit code 1 when there is one).
    Replay(ReplayConfig),
    /// The client's commands.
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Parses the command line, with defaults taken from the TOML file that
/// `--config` or `BATCHOPS_CONFIG` names.
pub fn parse() -> Result<Cli, CommandLineError> {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(path) = config_path(&args) {
        command = with_file_defaults(command, &path)?;
    }
    let matches = command
        .try_get_matches_from(args)
        .map_err(CommandLineError::Arguments)?;
    Cli::from_arg_matches(&matches).map_err(CommandLineError::Arguments)
}

/// The `--config` value, or `BATCHOPS_CONFIG`.
fn config_path(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return args.next().map(Into::into);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    std::env::var_os("BATCHOPS_CONFIG").map(Into::into)
}

/// Makes each key of the file the default of the subcommand arguments of
/// that name. A key that names no argument is an error.
fn with_file_defaults(
    mut command: clap::Command,
    path: &Path,
) -> Result<clap::Command, CommandLineError> {
    let file = |problem: String| CommandLineError::File {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|error| file(error.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| file(error.message().to_owned()))?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => return Err(file(format!("{key}: unsupported value {other}"))),
        };
        let subcommands: Vec<String> = command
            .get_subcommands()
            .filter(|sub| sub.get_arguments().any(|arg| arg.get_id() == key.as_str()))
            .map(|sub| sub.get_name().to_owned())
            .collect();
        if subcommands.is_empty() {
            return Err(file(format!("unknown setting {key:?}")));
        }
        for name in subcommands {
            let (key, value) = (key.clone(), value.clone());
            command = command.mut_subcommand(name, move |sub| {
                sub.mut_arg(key, move |arg| arg.default_value(value))
            });
        }
    }
    Ok(command)
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CommandLineError {
    /// The flags are wrong (clap says how, and exits with its code).
    #[error("{0}")]
    Arguments(clap::Error),
    /// The TOML file named by `--config` is unreadable or has an unknown key.
    #[error("config file {path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}
