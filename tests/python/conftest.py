"""Shared fixtures: the real batchops binary on a free loopback port with a
database of its own, and the batchops.v1 stubs generated from proto/."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("BATCHOPS_TEST_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Generates and imports the batchops.v1 stubs."""
    from grpc_tools import protoc
    import grpc_tools

    out = tmp_path_factory.mktemp("stubs")
    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    code = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from batchops.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    return job_pb2, job_service_pb2, job_service_pb2_grpc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The real binary on a free loopback port with a database of its own."""
    binary = os.environ.get("BATCHOPS_BIN", str(ROOT / "target" / "debug" / "batchops"))
    database = f"batchops_py_{uuid.uuid4().hex}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    port = free_port()
    objects = tmp_path / "objects"
    objects.mkdir()
    process = subprocess.Popen(
        [
            binary, "serve",
            "--listen", f"127.0.0.1:{port}",
            "--database-url", f"{base}/{database}",
            "--object-store", str(objects),
            "--poll-interval-ms", "20",
        ],
        stderr=open(tmp_path / "server.log", "w"),
    )
    try:
        deadline = time.time() + 30
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.time() < deadline, "server did not start"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", objects
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "server did not shut down cleanly on SIGTERM"
        subprocess.run(
            ["psql", ADMIN_URL, "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
            check=False,
            capture_output=True,
        )


