"""A typed client in another language: Python stubs generated from proto/ at
test time drive the real batchops binary through create -> confirm -> Complete."""

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "111122223333"


def wait_for(stub, messages, job_id, status):
    job_pb2, service_pb2, _ = messages
    deadline = time.time() + 30
    while True:
        job = stub.DescribeJob(service_pb2.DescribeJobRequest(account_id=ACCOUNT, job_id=job_id)).job
        if job.status == status:
            return job
        assert time.time() < deadline, f"job stuck in {job_pb2.JobStatus.Name(job.status)}"
        time.sleep(0.05)


def test_python_client_creates_confirms_and_completes_a_job(pb, server):
    import grpc

    job_pb2, service_pb2, service_grpc = pb
    address, objects = server
    contents = {f"photos/img {i}.jpg": os.urandom(1000 + i) for i in range(3)}
    for key, content in contents.items():
        path = objects / "media" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    manifest = "".join(f"media,{key.replace(' ', '%20')}\n" for key in contents)
    (objects / "media" / "manifest.csv").write_text(manifest)

    with grpc.insecure_channel(address) as channel:
        stub = service_grpc.JobServiceStub(channel)
        request = service_pb2.CreateJobRequest(
            account_id=ACCOUNT,
            client_request_token=str(uuid.uuid4()),
            description="checksum photos",
            priority=5,
            manifest=job_pb2.Manifest(
                format=job_pb2.MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820,
                bucket="media",
                key="manifest.csv",
            ),
            operation=job_pb2.Operation(
                compute_object_checksum=job_pb2.ComputeObjectChecksumOperation(
                    algorithm=job_pb2.CHECKSUM_ALGORITHM_SHA256
                )
            ),
            tags=[job_pb2.Tag(key="team", value="media")],
        )
        job_id = stub.CreateJob(request).job_id
        assert stub.CreateJob(request).job_id == job_id, "CreateJob is idempotent"

        job = wait_for(stub, pb, job_id, job_pb2.JOB_STATUS_SUSPENDED)
        assert job.progress_summary.total_number_of_tasks == 3

        confirmed = stub.UpdateJobStatus(
            service_pb2.UpdateJobStatusRequest(
                account_id=ACCOUNT, job_id=job_id, requested_job_status=job_pb2.JOB_STATUS_READY
            )
        )
        assert confirmed.status == job_pb2.JOB_STATUS_READY

        job = wait_for(stub, pb, job_id, job_pb2.JOB_STATUS_COMPLETE)
        assert job.progress_summary.number_of_tasks_succeeded == 3
        assert job.progress_summary.number_of_tasks_failed == 0
        assert [(t.key, t.value) for t in job.tags] == [("team", "media")]

        history = [
            message.event
            for message in stub.GetJobHistory(
                service_pb2.GetJobHistoryRequest(account_id=ACCOUNT, job_id=job_id)
            )
        ]
        statuses = [e.status_changed.status for e in history if e.WhichOneof("event") == "status_changed"]
        assert statuses == [
            job_pb2.JOB_STATUS_PREPARING,
            job_pb2.JOB_STATUS_SUSPENDED,
            job_pb2.JOB_STATUS_READY,
            job_pb2.JOB_STATUS_ACTIVE,
            job_pb2.JOB_STATUS_COMPLETING,
            job_pb2.JOB_STATUS_COMPLETE,
        ]
        assert [e.sequence for e in history] == list(range(1, len(history) + 1))

        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateJobStatus(
                service_pb2.UpdateJobStatusRequest(
                    account_id=ACCOUNT, job_id=job_id, requested_job_status=job_pb2.JOB_STATUS_CANCELLED
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        with pytest.raises(grpc.RpcError) as invalid:
            stub.DescribeJob(service_pb2.DescribeJobRequest(account_id=ACCOUNT, job_id="nope"))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "job_id" in invalid.value.details()
