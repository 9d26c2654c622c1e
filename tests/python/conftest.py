"""Shared fixtures: the real batchops binary on a free loopback port with a
database of its own, and the batchops.v1 stubs generated from proto/."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("BATCHOPS_BIN", str(ROOT / "target" / "debug" / "batchops"))


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


def wait_until_serving(process, log):
    """Waits for the server's "serving" log line: it binds its port before
    its database is ready, so an open port is not enough."""
    deadline = time.time() + 60
    while True:
        assert process.poll() is None, log.read_text()
        if "serving" in log.read_text():
            return
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)


def wait_for_line(process, log, pattern):
    """The first group of `pattern` once a line of the log matches it."""
    deadline = time.time() + 60
    while True:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1)
        assert process.poll() is None, log.read_text()
        assert time.time() < deadline, f"the server never logged {pattern!r}"
        time.sleep(0.02)


def with_database(url, database):
    """`url` naming `database`: a postgres:// URL's path, or a dbname appended."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        location, _, query = rest.partition("?")
        authority = location.split("/", 1)[0]
        return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")
    return f"{url} dbname={database}"


@pytest.fixture(scope="session")
def postgres():
    """The server the tests use: BATCHOPS_TEST_DATABASE_URL when set, else the
    private cluster of a `batchops serve` that owns it for the session (the
    same one `serve` runs without a database URL), on a Unix socket."""
    url = os.environ.get("BATCHOPS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Outside pytest's private (0700) temporary directories: when the tests run
    # as root, the cluster runs as the postgres user, which must reach it.
    home = Path(tempfile.mkdtemp(prefix="batchops-py-"))
    home.chmod(0o755)
    log = home / "owner.log"
    port = free_port()
    owner = subprocess.Popen(
        [
            BINARY, "serve", "--no-engine",
            "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(home / "data"),
            "--s3control-listen", "off",
            "--console-listen", "off",
            "--object-store", str(home / "objects"),
        ],
        stderr=open(log, "w"),
        env={**os.environ, "RUST_LOG": "info"},
    )
    try:
        wait_until_serving(owner, log)
        socket_dir = home / "data" / "run"
        yield f"host='{socket_dir}' port=5432 user=postgres dbname=postgres"
    finally:
        owner.terminate()
        owner.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


class Server:
    """A running `batchops serve`: its gRPC address, its S3 Control and
    console URLs (when it listens for them), its object directory, its log
    and its database (a libpq URL or connection string)."""

    def __init__(self, grpc, s3control, objects, log, database, console=None):
        self.grpc = grpc
        self.s3control = s3control
        self.objects = objects
        self.log = log
        self.database = database
        self.console = console


@contextlib.contextmanager
def running_server(tmp_path, postgres, extra=(), object_store=None):
    """Runs the real binary on free loopback ports with a database of its
    own until the block ends; SIGTERM must then stop it cleanly."""
    database = f"batchops_py_{uuid.uuid4().hex}"
    port = free_port()
    objects = tmp_path / "objects"
    objects.mkdir(exist_ok=True)
    log = tmp_path / f"server-{port}.log"
    process = subprocess.Popen(
        [
            BINARY, "serve",
            "--listen", f"127.0.0.1:{port}",
            "--s3control-listen", "127.0.0.1:0",
            "--console-listen", "127.0.0.1:0",
            "--database-url", with_database(postgres, database),
            "--object-store", object_store or str(objects),
            "--poll-interval-ms", "20",
            *extra,
        ],
        stderr=open(log, "w"),
        env={**os.environ, "RUST_LOG": "info"},
    )
    try:
        wait_until_serving(process, log)
        # Each listener logs its own line, in no set order.
        s3control = "http://" + wait_for_line(process, log, r"serving S3 Control address=(\S+)")
        console = "http://" + wait_for_line(process, log, r"serving console address=(\S+)")
        yield Server(f"127.0.0.1:{port}", s3control, objects, log, with_database(postgres, database), console)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "server did not shut down cleanly on SIGTERM"
        if os.environ.get("BATCHOPS_TEST_DATABASE_URL") and shutil.which("psql"):
            subprocess.run(
                ["psql", postgres, "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                check=False,
                capture_output=True,
            )


@pytest.fixture
def server(tmp_path, postgres):
    """The real binary on a free loopback port with a database of its own:
    its gRPC address and object directory."""
    with running_server(tmp_path, postgres) as running:
        yield running.grpc, running.objects
