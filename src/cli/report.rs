//! `batchops report`: prints a job's completion report (its CSV rows, as
//! written) or saves its files, reading them from the object store the
//! server writes to and checking each file's MD5 against `manifest.json`.
//! `--from-results` builds the same rows from the task results the server
//! holds instead, for jobs without a report or clients without access to
//! the store. With `--output json`, each row is a JSON object on a line of
//! its own (`bucket`, `key` decoded, `version_id`, `task_status`,
//! `http_status_code`, `error_code`, `result_message`).

use futures::StreamExt;
use md5::{Digest, Md5};

use super::{CliError, Client, HeadObject, Output, Report, print_json, print_text};
use crate::objects::Buckets;
use crate::objects::report::{ListedFile, ReportRow, listed_files, report_row};
use crate::proto as pb;

/// Runs `batchops report`.
pub(crate) async fn run(args: Report) -> Result<(), CliError> {
    let mut client = Client::connect(&args.job.client).await?;
    let output = args.job.client.output;
    if args.from_results {
        return from_results(&mut client, &args.job.job_id, args.only_failed, output).await;
    }
    let job = client.describe(&args.job.job_id).await?;
    if !job.report.as_ref().is_some_and(|report| report.enabled) {
        return Err(CliError::Report(format!(
            "job {} was created without a completion report; --from-results prints its rows \
             from the task results",
            job.job_id
        )));
    }
    let Some(location) = job.report_location else {
        return Err(CliError::Report(format!(
            "job {} has no completion report yet (status {}; a report is written when a job \
             that asked for one ends); --from-results prints its rows from the task results",
            job.job_id,
            super::table::status_name(job.status)
        )));
    };
    let buckets = open_store(&args.object_store)?;
    let manifest = read(&buckets, &location.bucket, &location.manifest_key).await?;
    let files = listed_files(&manifest)
        .map_err(|problem| CliError::Report(format!("manifest.json: {problem}")))?;
    if let Some(dir) = &args.output_dir {
        let save = |name: &str, content: &[u8]| {
            let path = dir.join(name);
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, content))
                .map_err(|error| CliError::Report(format!("{}: {error}", path.display())))?;
            print_text(&format!("{}\n", path.display()))
        };
        save("manifest.json", &manifest)?;
        for file in &files {
            let content = read_checked(&buckets, file).await?;
            let name = file.key.rsplit('/').next().unwrap_or(&file.key);
            save(name, &content)?;
        }
        return Ok(());
    }
    for file in &files {
        let content = read_checked(&buckets, file).await?;
        match output {
            Output::Table => print_text(&String::from_utf8_lossy(&content))?,
            Output::Json => print_csv_as_json(&content)?,
        }
    }
    Ok(())
}

/// One report row as a JSON object, with the key decoded (the CSV holds it
/// URL-encoded, as AWS writes it).
fn row_json(row: &ReportRow<'_>) -> serde_json::Value {
    serde_json::json!({
        "bucket": row.bucket,
        "key": row.key,
        "version_id": row.version_id,
        "task_status": if row.succeeded { "succeeded" } else { "failed" },
        "http_status_code": row.http_status_code,
        "error_code": row.error_code,
        "result_message": row.result_message,
    })
}

/// Prints each CSV row of a report file as a JSON object on its own line.
fn print_csv_as_json(content: &[u8]) -> Result<(), CliError> {
    let invalid = |problem: String| CliError::Report(format!("a report file: {problem}"));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(content);
    for record in reader.records() {
        let record = record.map_err(|error| invalid(error.to_string()))?;
        if record.len() != 7 {
            return Err(invalid(format!("a row has {} fields, not 7", record.len())));
        }
        let key = percent_encoding::percent_decode_str(&record[1]).decode_utf8_lossy();
        let http_status_code = record[4]
            .parse()
            .map_err(|_| invalid(format!("HTTP status {:?} is not a number", &record[4])))?;
        print_json(&row_json(&ReportRow {
            bucket: &record[0],
            key: &key,
            version_id: &record[2],
            succeeded: &record[3] == "succeeded",
            http_status_code,
            error_code: &record[5],
            result_message: &record[6],
        }))?;
    }
    Ok(())
}

/// The object store `--object-store` names.
fn open_store(object_store: &str) -> Result<Buckets, CliError> {
    let url = crate::objects::store_url(object_store)
        .map_err(|error| CliError::Usage(format!("--object-store: {error}")))?;
    Buckets::open(&url).map_err(|error| CliError::Usage(format!("--object-store: {error}")))
}

/// A failure to read `bucket/key`, naming it.
fn object_error(bucket: &str, key: &str, error: impl std::fmt::Display) -> CliError {
    CliError::Report(format!("{bucket}/{key}: {error}"))
}

async fn read(buckets: &Buckets, bucket: &str, key: &str) -> Result<Vec<u8>, CliError> {
    let failed = |error: object_store::Error| object_error(bucket, key, error);
    let object = buckets
        .locate(bucket, key)
        .map_err(|error| object_error(bucket, key, error))?;
    let data = object
        .store
        .get(&object.path)
        .await
        .map_err(failed)?
        .bytes()
        .await
        .map_err(failed)?;
    Ok(data.to_vec())
}

/// A report file's content, refused when its MD5 is not the manifest's.
async fn read_checked(buckets: &Buckets, file: &ListedFile) -> Result<Vec<u8>, CliError> {
    let content = read(buckets, &file.bucket, &file.key).await?;
    let actual = hex::encode(Md5::digest(&content));
    if !actual.eq_ignore_ascii_case(&file.md5) {
        return Err(CliError::Report(format!(
            "{}/{}: MD5 is {actual}, manifest.json says {}; the file was changed after it was \
             written",
            file.bucket, file.key, file.md5
        )));
    }
    Ok(content)
}

async fn from_results(
    client: &mut Client,
    job_id: &str,
    only_failed: bool,
    output: Output,
) -> Result<(), CliError> {
    let mut stream = client
        .jobs
        .list_job_task_results(pb::ListJobTaskResultsRequest {
            account_id: client.account_id.clone(),
            job_id: job_id.to_owned(),
            only_failed,
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        let Some(result) = item?.result else { continue };
        let row = ReportRow {
            bucket: &result.bucket,
            key: &result.key,
            version_id: &result.version_id,
            succeeded: result.task_status() == pb::TaskStatus::Succeeded,
            http_status_code: result.http_status_code,
            error_code: &result.error_code,
            result_message: &result.result_message,
        };
        if output == Output::Json {
            print_json(&row_json(&row))?;
            continue;
        }
        let line = report_row(&row).map_err(|error| CliError::Report(error.to_string()))?;
        print_text(&String::from_utf8_lossy(&line))?;
    }
    Ok(())
}

/// Runs `batchops head-object`: an object's size, ETag and last-modified
/// time, from the store the server reads.
pub(crate) async fn head_object(args: HeadObject) -> Result<std::process::ExitCode, CliError> {
    let (bucket, key) = args
        .object
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| CliError::Usage(format!("{:?} is not BUCKET/KEY", args.object)))?;
    let buckets = open_store(&args.object_store)?;
    let object = buckets
        .locate(bucket, key)
        .map_err(|error| object_error(bucket, key, error))?;
    let meta = object
        .store
        .head(&object.path)
        .await
        .map_err(|error| object_error(bucket, key, error))?;
    let etag = meta.e_tag.unwrap_or_default();
    let modified = meta
        .last_modified
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match args.output {
        Output::Json => print_json(&serde_json::json!({
            "etag": etag,
            "size": meta.size,
            "last_modified": modified,
        }))?,
        Output::Table => print_text(&format!(
            "Size          {}\nETag          {etag}\nLastModified  {modified}\n",
            meta.size
        ))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
