//! The client subcommands of the `batchops` binary, named after
//! `aws s3control` (`create-job`, `describe-job`, `list-jobs`,
//! `update-job-status`, …) with the same flags where they exist, plus
//! `watch`, `history` and `report`.
//!
//! Output is a human-readable table by default and proto3 JSON with
//! `--output json` (one object per response; one per line for streams).
//! Its parts: [`args`] (the commands' arguments), [`flags`] (flags that take
//! the contract's messages), [`connect`] (the connection, TLS and token),
//! [`jobs`] (the job commands and their tables), [`watch`], `history` and
//! [`report`].
//!
//! Exit codes are stable, for scripts:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`watch`: the job is Complete) |
//! | 1 | `watch`: the job ended Failed or Cancelled |
//! | 2 | bad command line or INVALID_ARGUMENT |
//! | 3 | NOT_FOUND |
//! | 4 | FAILED_PRECONDITION, ALREADY_EXISTS or ABORTED (the job's state refused it) |
//! | 5 | the server cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED, connection refused) |
//! | 6 | UNAUTHENTICATED or PERMISSION_DENIED |
//! | 7 | any other error (INTERNAL, a report that cannot be read, …) |

mod args;
mod connect;
mod flags;
mod jobs;
mod json;
mod report;
mod table;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use crate::contract::code_name;

pub use args::{
    ClientCommand, ClientOptions, CreateJob, HeadObject, History, JobCommand, ListJobs, Output,
    PutJobTagging, Report, UpdateJobPriority, UpdateJobStatus,
};
pub use connect::Client;

/// Why a client command failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line or flag value (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached (exit code 5).
    #[error("cannot reach batchops at {endpoint}: {reason}")]
    Connect {
        /// The server's address.
        endpoint: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The server answered with an error; its code decides the exit code.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// A stream ended in an unexpected way (exit code 7).
    #[error("{0}")]
    Stream(String),
    /// A report could not be read or failed its MD5 check (exit code 7).
    #[error("{0}")]
    Report(String),
    /// Standard output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

impl CliError {
    /// The documented exit code of this error.
    pub fn exit_code(&self) -> u8 {
        use tonic::Code;
        match self {
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 5,
            CliError::Rpc(status) => match status.code() {
                Code::InvalidArgument | Code::OutOfRange => 2,
                Code::NotFound => 3,
                Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => 4,
                Code::Unavailable | Code::DeadlineExceeded => 5,
                Code::Unauthenticated | Code::PermissionDenied => 6,
                _ => 7,
            },
            CliError::Stream(_) | CliError::Report(_) | CliError::Output(_) => 7,
        }
    }
}

/// Runs a client subcommand and prints its outcome; returns the exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    match execute(command).await {
        Ok(code) => code,
        // A closed pipe (`batchops history | head`) is not a failure.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("batchops: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn execute(command: ClientCommand) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::CreateJob(args) => jobs::create_job(args).await,
        ClientCommand::DescribeJob(args) => jobs::describe_job(args).await,
        ClientCommand::ListJobs(args) => jobs::list_jobs(args).await,
        ClientCommand::UpdateJobStatus(args) => jobs::update_job_status(args).await,
        ClientCommand::UpdateJobPriority(args) => jobs::update_job_priority(args).await,
        ClientCommand::PutJobTagging(args) => jobs::put_job_tagging(args).await,
        ClientCommand::GetJobTagging(args) => jobs::get_job_tagging(args).await,
        ClientCommand::DeleteJobTagging(args) => jobs::delete_job_tagging(args).await,
        ClientCommand::Watch(args) => {
            let mut client = Client::connect(&args.client).await?;
            match watch::run(&mut client, args.client.output, &args.job_id).await? {
                watch::Ending::Complete => Ok(ExitCode::SUCCESS),
                watch::Ending::Unsuccessful => Ok(ExitCode::FAILURE),
            }
        }
        ClientCommand::History(args) => jobs::history(args).await,
        ClientCommand::Report(args) => report::run(args).await.map(|()| ExitCode::SUCCESS),
        ClientCommand::HeadObject(args) => report::head_object(args).await,
    }
}

fn print_text(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// One JSON document per line.
fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    print_text(&format!("{value}\n"))
}

/// Prints `message` as JSON, or the table `render` makes of it.
fn print<M: prost::Message + prost::Name>(
    output: Output,
    message: &M,
    render: impl FnOnce(&M) -> String,
) -> Result<ExitCode, CliError> {
    match output {
        Output::Json => print_json(&json::to_value(message))?,
        Output::Table => print_text(&render(message))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_documented_exit_codes() {
        let code = |code| CliError::Rpc(tonic::Status::new(code, "x")).exit_code();
        assert_eq!(code(tonic::Code::InvalidArgument), 2);
        assert_eq!(code(tonic::Code::NotFound), 3);
        assert_eq!(code(tonic::Code::FailedPrecondition), 4);
        assert_eq!(code(tonic::Code::Unavailable), 5);
        assert_eq!(code(tonic::Code::PermissionDenied), 6);
        assert_eq!(code(tonic::Code::Internal), 7);
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
