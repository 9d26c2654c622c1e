"""The S3 Control job API with the real clients: boto3 and the AWS CLI, both
pinned in tests/python/requirements.txt. Clients reach the listener the way
the README documents for a name without DNS: the endpoint is
http://batchops.internal and the listener is their HTTP proxy."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BINARY, running_server

ACCOUNT = "111122223333"
OTHER = "444455556666"
ROLE = "arn:aws:iam::111122223333:role/batch-operations"
# The AWS CLI installed beside the interpreter running the tests (the test virtual environment).
AWS_CLI = str(Path(sys.executable).parent / "aws")


def client(server, key="test", secret="test"):
    return boto3.client(
        "s3control",
        endpoint_url="http://batchops.internal",
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(proxies={"http": server.s3control}, retries={"max_attempts": 1}),
    )


def aws(server, *args, key="test", secret="test"):
    """Runs `aws s3control ...` through the listener; returns its JSON."""
    env = {
        **os.environ,
        "HTTP_PROXY": server.s3control,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    done = subprocess.run(
        [AWS_CLI, "s3control", *args, "--endpoint-url", "http://batchops.internal", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"aws s3control {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def put(objects, bucket, key, content):
    path = objects / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def etag(server, bucket, key):
    """The ETag of an object, as `batchops head-object` prints it."""
    done = subprocess.run(
        [BINARY, "head-object", f"{bucket}/{key}", "--object-store", str(server.objects), "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)["etag"]


def photos(server):
    """Two photos and a manifest of them; returns the manifest's ETag."""
    put(server.objects, "photos", "2024/a.jpg", b"first\n")
    put(server.objects, "photos", "2024/b c.jpg", b"second\n")
    put(server.objects, "photos", "manifest.csv", b"photos,2024/a.jpg\nphotos,2024/b%20c.jpg\n")
    return etag(server, "photos", "manifest.csv")


def checksum_job(manifest_etag, **extra):
    job = {
        "AccountId": ACCOUNT,
        "ConfirmationRequired": True,
        "Operation": {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"}},
        "Report": {
            "Bucket": "arn:aws:s3:::reports",
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": "batch",
            "ReportScope": "AllTasks",
        },
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": "arn:aws:s3:::photos/manifest.csv", "ETag": manifest_etag},
        },
        "Priority": 10,
        "RoleArn": ROLE,
        "Description": "checksum my photos",
        "Tags": [{"Key": "team", "Value": "photos"}],
    }
    job.update(extra)
    return job


def wait_for(s3, job_id, status, account=ACCOUNT):
    deadline = time.time() + 30
    while True:
        job = s3.describe_job(AccountId=account, JobId=job_id)["Job"]
        if job["Status"] == status:
            return job
        assert time.time() < deadline, f"{job_id} is {job['Status']}, never {status}: {job.get('FailureReasons')}"
        time.sleep(0.05)


@pytest.fixture
def s3(tmp_path, postgres):
    with running_server(tmp_path, postgres) as server:
        yield server


def test_the_seed_lifecycle_runs_through_boto3(s3):
    manifest_etag = photos(s3)
    client_ = client(s3)
    job_id = client_.create_job(**checksum_job(manifest_etag))["JobId"]

    job = wait_for(client_, job_id, "Suspended")
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 2
    assert job["SuspendedCause"]
    assert job["SuspendedDate"]
    assert job["RoleArn"] == ROLE
    assert job["Priority"] == 10
    assert job["ConfirmationRequired"] is True
    assert job["Manifest"]["Location"]["ObjectArn"] == "arn:aws:s3:::photos/manifest.csv"
    assert job["Operation"]["S3ComputeObjectChecksum"]["ChecksumAlgorithm"] == "SHA256"
    assert job["Report"]["Bucket"] == "arn:aws:s3:::reports"
    assert job["JobArn"].endswith(f":{ACCOUNT}:job/{job_id}")

    updated = client_.update_job_status(
        AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready", StatusUpdateReason="go"
    )
    assert updated["Status"] == "Ready"
    job = wait_for(client_, job_id, "Complete")
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert job["StatusUpdateReason"] == "go"
    assert job["TerminationDate"] >= job["CreationTime"]

    # The report is in AWS's layout.
    base = s3.objects / "reports" / "batch" / f"job-{job_id}"
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["Format"] == "Report_CSV_20180820"
    rows = "".join((s3.objects / "reports" / r["Key"]).read_text() for r in manifest["Results"])
    assert "photos,2024/b%20c.jpg,,succeeded,200," in rows


def test_every_job_call_works_with_the_aws_cli(s3, tmp_path):
    manifest_etag = photos(s3)
    definition = tmp_path / "job.json"
    definition.write_text(json.dumps(checksum_job(manifest_etag, ClientRequestToken=str(uuid.uuid4()))))
    job_id = aws(s3, "create-job", "--cli-input-json", f"file://{definition}")["JobId"]
    described = aws(s3, "describe-job", "--account-id", ACCOUNT, "--job-id", job_id)["Job"]
    assert described["Description"] == "checksum my photos"
    listed = aws(s3, "list-jobs", "--account-id", ACCOUNT, "--job-statuses", "New", "Preparing", "Suspended")
    assert job_id in [job["JobId"] for job in listed["Jobs"]]
    priority = aws(s3, "update-job-priority", "--account-id", ACCOUNT, "--job-id", job_id, "--priority", "42")
    assert priority == {"JobId": job_id, "Priority": 42}
    aws(s3, "put-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id, "--tags", "Key=env,Value=test")
    tags = aws(s3, "get-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id)
    assert tags["Tags"] == [{"Key": "env", "Value": "test"}]
    aws(s3, "delete-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id)
    assert aws(s3, "get-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id).get("Tags", []) == []
    status = aws(
        s3,
        "update-job-status",
        "--account-id", ACCOUNT,
        "--job-id", job_id,
        "--requested-job-status", "Cancelled",
        "--status-update-reason", "not today",
    )
    assert status["Status"] in ("Cancelled", "Cancelling")
    assert status["StatusUpdateReason"] == "not today"

    # The same document creates the job through batchops's own CLI.
    done = subprocess.run(
        [BINARY, "create-job", "--account-id", ACCOUNT, "--endpoint", f"http://{s3.grpc}",
         "--cli-input-json", f"file://{definition}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert uuid.UUID(done.stdout.strip())


def test_list_jobs_pages_with_next_token(s3):
    manifest_etag = photos(s3)
    client_ = client(s3)
    created = {client_.create_job(**checksum_job(manifest_etag))["JobId"] for _ in range(5)}
    seen, token = [], None
    while True:
        kwargs = {"AccountId": ACCOUNT, "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = client_.list_jobs(**kwargs)
        assert len(page["Jobs"]) <= 2
        seen += [job["JobId"] for job in page["Jobs"]]
        token = page.get("NextToken")
        if not token:
            break
    assert set(seen) == created and len(seen) == 5
    with pytest.raises(client_.exceptions.InvalidNextTokenException):
        client_.list_jobs(AccountId=ACCOUNT, NextToken="forged")


def test_boto3_raises_the_modelled_exceptions(s3):
    manifest_etag = photos(s3)
    client_ = client(s3)
    with pytest.raises(client_.exceptions.NotFoundException):
        client_.describe_job(AccountId=ACCOUNT, JobId=str(uuid.uuid4()))
    with pytest.raises(client_.exceptions.BadRequestException) as refused:
        client_.create_job(**checksum_job(manifest_etag, Operation={"S3ReplicateObject": {}}))
    assert "S3ReplicateObject" in str(refused.value)
    with pytest.raises(client_.exceptions.BadRequestException) as refused:
        client_.create_job(
            **checksum_job(
                manifest_etag,
                Manifest={
                    "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                    "Location": {"ObjectArn": "arn:aws:s3:::photos", "ETag": manifest_etag},
                },
            )
        )
    assert "ObjectArn" in str(refused.value)
    token = str(uuid.uuid4())
    client_.create_job(**checksum_job(manifest_etag, ClientRequestToken=token))
    with pytest.raises(client_.exceptions.IdempotencyException):
        client_.create_job(**checksum_job(manifest_etag, ClientRequestToken=token, Priority=99))
    job_id = client_.create_job(**checksum_job(manifest_etag, ConfirmationRequired=False))["JobId"]
    wait_for(client_, job_id, "Complete")
    with pytest.raises(client_.exceptions.JobStatusException):
        client_.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")
    with pytest.raises(client_.exceptions.TooManyTagsException):
        client_.put_job_tagging(
            AccountId=ACCOUNT, JobId=job_id, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]
        )


def test_a_database_failure_is_an_internal_service_exception(s3):
    import psycopg

    client_ = client(s3)
    assert client_.list_jobs(AccountId=ACCOUNT)["Jobs"] == []
    with psycopg.connect(s3.database, autocommit=True) as connection:
        connection.execute("ALTER TABLE jobs RENAME TO jobs_elsewhere")
    try:
        with pytest.raises(client_.exceptions.InternalServiceException) as failed:
            client_.list_jobs(AccountId=ACCOUNT)
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert "jobs_elsewhere" not in str(failed.value)
    finally:
        with psycopg.connect(s3.database, autocommit=True) as connection:
            connection.execute("ALTER TABLE jobs_elsewhere RENAME TO jobs")


def test_an_account_over_its_request_rate_gets_too_many_requests(tmp_path, postgres):
    with running_server(tmp_path, postgres, ["--s3control-requests-per-second", "2"]) as server:
        client_ = client(server)

        def call(_):
            try:
                client_.list_jobs(AccountId=ACCOUNT)
                return "served"
            except client_.exceptions.TooManyRequestsException:
                return "refused"

        # Ten at once, so that the refusal does not depend on how fast a
        # busy machine makes sequential calls.
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            outcomes = list(pool.map(call, range(10)))
        assert "refused" in outcomes, outcomes
        # Another account is not held up by the first one's flood.
        client_.list_jobs(AccountId=OTHER)


TOKENS = """
[[tokens]]
name = "owner"
access_key_id = "AKIAOWNER"
secret_access_key = "owner-secret"
accounts = ["111122223333"]

[[tokens]]
name = "grpc"
token = "grpc-token"
accounts = ["*"]
"""


def test_signatures_are_checked_when_tokens_are_configured(tmp_path, postgres):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    with running_server(tmp_path, postgres, ["--auth-tokens", str(tokens)]) as server:
        good = client(server, "AKIAOWNER", "owner-secret")
        assert good.list_jobs(AccountId=ACCOUNT)["Jobs"] == []
        assert aws(server, "list-jobs", "--account-id", ACCOUNT, key="AKIAOWNER", secret="owner-secret") == {"Jobs": []}
        for key, secret, code in [
            ("AKIAOWNER", "wrong-secret", "SignatureDoesNotMatch"),
            ("AKIAUNKNOWN", "owner-secret", "InvalidAccessKeyId"),
        ]:
            with pytest.raises(ClientError) as refused:
                client(server, key, secret).list_jobs(AccountId=ACCOUNT)
            assert refused.value.response["Error"]["Code"] == code
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # The key grants its account only, as a token would.
        with pytest.raises(ClientError) as refused:
            good.list_jobs(AccountId=OTHER)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_jobs_are_one_whichever_api_made_them(s3, pb):
    import grpc

    job_pb2, service_pb2, service_grpc = pb
    manifest_etag = photos(s3)
    client_ = client(s3)
    from_s3 = client_.create_job(**checksum_job(manifest_etag))["JobId"]
    with grpc.insecure_channel(s3.grpc) as channel:
        stub = service_grpc.JobServiceStub(channel)
        described = stub.DescribeJob(service_pb2.DescribeJobRequest(account_id=ACCOUNT, job_id=from_s3), timeout=10)
        assert described.job.role_arn == ROLE
        events = stub.WatchJobs(
            service_pb2.WatchJobsRequest(account_id=ACCOUNT, job_ids=[from_s3], after_position=0), timeout=30
        )
        for message in events:
            if message.HasField("event") and message.event.HasField("status_changed"):
                if message.event.status_changed.status == job_pb2.JOB_STATUS_SUSPENDED:
                    break
        events.cancel()
        request = service_pb2.CreateJobRequest(
            account_id=ACCOUNT,
            client_request_token=str(uuid.uuid4()),
            description="from grpc",
            manifest=job_pb2.Manifest(
                format=job_pb2.MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820,
                bucket="photos",
                key="manifest.csv",
            ),
            operation=job_pb2.Operation(
                compute_object_checksum=job_pb2.ComputeObjectChecksumOperation(
                    algorithm=job_pb2.CHECKSUM_ALGORITHM_MD5
                )
            ),
        )
        from_grpc = stub.CreateJob(request, timeout=10).job_id
    job = client_.describe_job(AccountId=ACCOUNT, JobId=from_grpc)["Job"]
    assert job["Description"] == "from grpc"
    assert job["Operation"]["S3ComputeObjectChecksum"]["ChecksumAlgorithm"] == "MD5"
    listed = [j["JobId"] for j in client_.list_jobs(AccountId=ACCOUNT)["Jobs"]]
    assert {from_s3, from_grpc} <= set(listed)


class LambdaHandler:
    """A Lambda-style S3 batch handler on loopback: records each event and
    answers every task Succeeded with the key upper-cased."""

    def __init__(self):
        import http.server
        import threading

        events = self.events = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                events.append(event)
                reply = json.dumps({
                    "invocationSchemaVersion": event["invocationSchemaVersion"],
                    "treatMissingKeysAs": "PermanentFailure",
                    "invocationId": event["invocationId"],
                    "results": [
                        {"taskId": task["taskId"], "resultCode": "Succeeded", "resultString": task["s3Key"].upper()}
                        for task in event["tasks"]
                    ],
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/invoke"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


FUNCTION = "arn:aws:lambda:us-east-1:111122223333:function:shout"


def test_every_operation_and_the_generator_run_through_s3_control(tmp_path, postgres):
    handler = LambdaHandler()
    flags = ["--invoke-allowlist", handler.url, "--invoke-functions", f"{FUNCTION}={handler.url}"]
    try:
        with running_server(tmp_path, postgres, flags) as server:
            manifest_etag = photos(server)
            client_ = client(server)

            # LambdaInvoke: the function ARN resolves to the handler's URL.
            invoke = {"LambdaInvoke": {
                "FunctionArn": FUNCTION,
                "InvocationSchemaVersion": "2.0",
                "UserArguments": {"mode": "loud"},
            }}
            job_id = client_.create_job(
                **checksum_job(manifest_etag, Operation=invoke, ConfirmationRequired=False)
            )["JobId"]
            job = wait_for(client_, job_id, "Complete")
            assert job["Operation"]["LambdaInvoke"]["FunctionArn"] == FUNCTION
            assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
            keys = sorted(task["s3Key"] for event in handler.events for task in event["tasks"])
            assert keys == ["2024/a.jpg", "2024/b%20c.jpg"]
            assert all(event["job"]["userArguments"] == {"mode": "loud"} for event in handler.events)

            with pytest.raises(client_.exceptions.BadRequestException) as refused:
                client_.create_job(**checksum_job(manifest_etag, Operation={"LambdaInvoke": {
                    "FunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:unknown"}}))
            assert "function" in str(refused.value)

            # S3PutObjectCopy over the objects a ManifestGenerator lists.
            generated = {
                "S3JobManifestGenerator": {
                    "SourceBucket": "arn:aws:s3:::photos",
                    "EnableManifestOutput": False,
                    "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": ["2024/"]}},
                }
            }
            copy = {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::backup", "TargetKeyPrefix": "copies/"}}
            job = checksum_job(manifest_etag, Operation=copy, ConfirmationRequired=False, ManifestGenerator=generated)
            del job["Manifest"]
            job_id = client_.create_job(**job)["JobId"]
            job = wait_for(client_, job_id, "Complete")
            assert job["ProgressSummary"]["TotalNumberOfTasks"] == 2
            assert job["ManifestGenerator"]["S3JobManifestGenerator"]["SourceBucket"] == "arn:aws:s3:::photos"
            assert job["Operation"]["S3PutObjectCopy"]["TargetResource"] == "arn:aws:s3:::backup"
            assert (server.objects / "backup" / "copies" / "2024" / "b c.jpg").read_bytes() == b"second\n"

            # A job that fails says why, in AWS's shape.
            missing = checksum_job(manifest_etag, ConfirmationRequired=False)
            missing["Manifest"]["Location"] = {"ObjectArn": "arn:aws:s3:::photos/gone.csv", "ETag": manifest_etag}
            job_id = client_.create_job(**missing)["JobId"]
            job = wait_for(client_, job_id, "Failed")
            assert job["FailureReasons"][0]["FailureCode"] == "ManifestNotFound"
            assert "gone.csv" in job["FailureReasons"][0]["FailureReason"]
            assert job["TerminationDate"]
    finally:
        handler.close()
