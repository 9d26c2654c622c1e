"""batchops from Python: create a job, watch it to the end, read its report.

Stubs are generated from the contract in ../../proto with grpcio-tools on
first run (into ./generated), so this file is all a Python client needs:

    pip install -r requirements.txt
    python quickstart.py --endpoint 127.0.0.1:50051 --objects ../../batchops-objects

--objects is the server's local object store (its --object-store directory),
where this example puts a few objects and a manifest and reads the report.
"""

import argparse
import hashlib
import json
import sys
import urllib.parse
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
GENERATED = HERE / "generated"


def load_stubs():
    """Generates the batchops.v1 modules if needed and imports them."""
    if not (GENERATED / "batchops" / "v1" / "job_service_pb2_grpc.py").exists():
        import grpc_tools
        from grpc_tools import protoc

        GENERATED.mkdir(exist_ok=True)
        include = Path(grpc_tools.__file__).parent / "_proto"
        protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
        args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}"]
        if protoc.main(args + protos) != 0:
            sys.exit("could not generate stubs from " + str(PROTO))
    sys.path.insert(0, str(GENERATED))
    from batchops.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    return job_pb2, job_service_pb2, job_service_pb2_grpc


def put_objects(objects: Path, bucket: str, count: int) -> None:
    """Writes `count` objects and a CSV manifest (bucket,url-encoded key) listing them."""
    lines = []
    for i in range(count):
        key = f"2024/photo {i}.jpg"
        path = objects / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"pixels of photo {i}".encode())
        lines.append(f"{bucket},{urllib.parse.quote(key)}\n")
    (objects / bucket / "manifest.csv").write_text("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="127.0.0.1:50051")
    parser.add_argument("--account-id", default="111122223333")
    parser.add_argument("--objects", type=Path, required=True, help="the server's --object-store directory")
    args = parser.parse_args()

    import grpc

    job_pb2, service_pb2, service_grpc = load_stubs()
    status_name = lambda value: job_pb2.JobStatus.Name(value).removeprefix("JOB_STATUS_").title()
    put_objects(args.objects, "photos", 5)

    with grpc.insecure_channel(args.endpoint) as channel:
        jobs = service_grpc.JobServiceStub(channel)

        # 1. Create a job: SHA-256 of every object, with a completion report.
        job_id = jobs.CreateJob(
            service_pb2.CreateJobRequest(
                account_id=args.account_id,
                client_request_token=str(uuid.uuid4()),
                description="checksum photos (Python example)",
                priority=10,
                confirmation_required=True,
                manifest=job_pb2.Manifest(
                    format=job_pb2.MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820,
                    bucket="photos",
                    key="manifest.csv",
                ),
                operation=job_pb2.Operation(
                    compute_object_checksum=job_pb2.ComputeObjectChecksumOperation(
                        algorithm=job_pb2.CHECKSUM_ALGORITHM_SHA256
                    )
                ),
                report=job_pb2.JobReport(
                    enabled=True, bucket="reports", prefix="examples", report_scope=job_pb2.REPORT_SCOPE_ALL_TASKS
                ),
            )
        ).job_id
        print(f"created job {job_id}")

        # 2. Watch it from its first event: the stream replays the log, sends
        #    caught_up, then pushes changes as they commit. Confirm it when it
        #    waits in Suspended; stop when it ends.
        status = job_pb2.JOB_STATUS_NEW
        watch = jobs.WatchJobs(
            service_pb2.WatchJobsRequest(account_id=args.account_id, job_ids=[job_id], after_position=0)
        )
        for message in watch:
            kind = message.WhichOneof("message")
            if kind == "event" and message.event.WhichOneof("event") == "status_changed":
                change = message.event.status_changed
                status = change.status
                print(f"{status_name(change.previous_status)} -> {status_name(change.status)}")
                if status == job_pb2.JOB_STATUS_SUSPENDED:
                    jobs.UpdateJobStatus(
                        service_pb2.UpdateJobStatusRequest(
                            account_id=args.account_id,
                            job_id=job_id,
                            requested_job_status=job_pb2.JOB_STATUS_READY,
                        )
                    )
            elif kind == "progress":
                summary = message.progress.progress_summary
                done = summary.number_of_tasks_succeeded + summary.number_of_tasks_failed
                print(f"progress {done}/{summary.total_number_of_tasks}")
            if status in (job_pb2.JOB_STATUS_COMPLETE, job_pb2.JOB_STATUS_FAILED, job_pb2.JOB_STATUS_CANCELLED):
                watch.cancel()
                break

        # 3. Read the report: manifest.json lists CSV files with their MD5s.
        job = jobs.DescribeJob(service_pb2.DescribeJobRequest(account_id=args.account_id, job_id=job_id)).job
        summary = job.progress_summary
        print(
            f"{status_name(job.status)}: {summary.number_of_tasks_succeeded} succeeded, "
            f"{summary.number_of_tasks_failed} failed"
        )
        location = job.report_location
        manifest = json.loads((args.objects / location.bucket / location.manifest_key).read_text())
        rows = 0
        for result in manifest["Results"]:
            content = (args.objects / result["Bucket"] / result["Key"]).read_bytes()
            if hashlib.md5(content).hexdigest() != result["MD5Checksum"]:
                sys.exit(f"report file {result['Key']} does not match its MD5")
            for line in content.decode().splitlines():
                print(line)
                rows += 1
        print(f"report rows: {rows}")
        return 0 if job.status == job_pb2.JOB_STATUS_COMPLETE else 1


if __name__ == "__main__":
    sys.exit(main())
