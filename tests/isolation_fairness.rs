//! Fair shares between accounts, against the real server: one account's
//! huge manifest or top-priority job never holds up another account's job
//! beyond its turn, in preparation or at the workers.

mod common;

use std::time::Duration;

use batchops::proto as pb;
use common::*;
use pb::JobStatus as S;

const OTHER_ACCOUNT: &str = "444455556666";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_manifest_does_not_hold_up_another_accounts_job() {
    // Given a top-priority job of one account whose manifest has 2,000,000
    // lines, being prepared,
    let mut server = TestServer::start().await;
    let mut big = String::with_capacity(2_000_000 * 16);
    for n in 0..2_000_000 {
        big.push_str("data,k");
        big.push_str(&n.to_string());
        big.push('\n');
    }
    server.put_object("data", "big.csv", big.as_bytes());
    drop(big);
    server.put_object("data", "small.csv", b"data,object\n");
    server.put_object("data", "object", b"content");
    let mut request = checksum_job_of(ACCOUNT, "big", "big.csv");
    request.priority = i32::MAX;
    let huge = server.create(request).await;
    wait_for(&mut server.client, &huge, S::Preparing).await;

    // when another account creates a one-object job,
    let small = server
        .create(checksum_job_of(OTHER_ACCOUNT, "small", "small.csv"))
        .await;

    // then that job completes while the huge one is still being prepared.
    wait_for_of(&mut server.client, OTHER_ACCOUNT, &small, S::Complete).await;
    let job = describe(&mut server.client, &huge).await;
    assert_eq!(
        job.status,
        S::Preparing as i32,
        "the huge manifest was prepared before the small job completed"
    );
    server
        .update_status(&huge, S::Cancelled, "done with it")
        .await
        .unwrap();
    wait_for(&mut server.client, &huge, S::Cancelled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_priority_job_does_not_hold_the_workers_from_another_account() {
    // Given an endpoint that takes 50 ms a call and a top-priority job of one
    // account with 200 tasks, running 2 at a time,
    let endpoint = TestEndpoint::start(|event, _, _| Reply {
        delay: Duration::from_millis(50),
        ..Reply::result(event, "Succeeded", "slow")
    })
    .await;
    let mut server = TestServer::start_with(Settings {
        invoke_allowlist: endpoint.url.clone(),
        task_concurrency: 2,
        chunk_size: 4,
        ..Settings::default()
    })
    .await;
    let lines: String = (0..200).map(|n| format!("data,big-{n}\n")).collect();
    server.put_object("data", "big.csv", lines.as_bytes());
    server.put_object("data", "small.csv", b"data,s1\ndata,s2\ndata,s3\ndata,s4\n");
    let invoke = |account: &str, token: &str, manifest: &str| {
        let mut request = invoke_job(
            token,
            &endpoint.url,
            pb::InvocationSchemaVersion::InvocationSchemaVersion20,
        );
        request.account_id = account.into();
        request.manifest.as_mut().unwrap().key = manifest.into();
        request
    };
    let mut request = invoke(ACCOUNT, "big", "big.csv");
    request.priority = i32::MAX;
    let big = server.create(request).await;
    wait_for(&mut server.client, &big, S::Active).await;

    // when another account's small job arrives,
    let small = server
        .create(invoke(OTHER_ACCOUNT, "small", "small.csv"))
        .await;

    // then it completes while the big job is still running.
    wait_for_of(&mut server.client, OTHER_ACCOUNT, &small, S::Complete).await;
    let job = describe(&mut server.client, &big).await;
    assert_eq!(
        job.status,
        S::Active as i32,
        "the big job finished first: {:?}",
        job.progress_summary
    );
    server
        .update_status(&big, S::Cancelled, "done with it")
        .await
        .unwrap();
    wait_for(&mut server.client, &big, S::Cancelled).await;
}
