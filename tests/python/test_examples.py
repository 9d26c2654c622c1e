"""The example clients in examples/ run as a user would run them, against the
real binary: each creates a job, watches it to Complete and prints its
report."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check_run(output: subprocess.CompletedProcess, rows: int) -> None:
    assert output.returncode == 0, output.stdout + output.stderr
    assert "Suspended -> Ready" in output.stdout, output.stdout
    assert "Completing -> Complete" in output.stdout, output.stdout
    lines = [line.strip() for line in output.stdout.splitlines()]
    assert f"report rows: {rows}" in lines, output.stdout
    report = [line for line in lines if line.startswith("photos,")]
    assert len(report) == rows, output.stdout
    assert all(",succeeded,200," in line for line in report), report


def test_python_example_runs_a_job_to_its_report(server):
    address, objects = server
    output = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/quickstart.py"), "--endpoint", address, "--objects", str(objects)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_run(output, 5)


def test_typescript_example_runs_a_job_to_its_report(server):
    """Needs `npm ci && npm run build` in examples/typescript (.ci/test does it)."""
    address, objects = server
    example = ROOT / "examples/typescript"
    assert (example / "dist/main.js").exists(), "build it first: npm ci && npm run build in examples/typescript"
    output = subprocess.run(
        ["node", "dist/main.js", "--endpoint", address, "--objects", str(objects)],
        cwd=example,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_run(output, 5)
