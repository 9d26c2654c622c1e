"""The README's generic-tool commands, run as written (but for the server's
address) with the buf that .ci/test installs under tests/tools."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tests" / "tools"


def readme_commands(prefix):
    """Every `npx ... buf curl` command of the README, joined across its
    continuation lines."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip().startswith(prefix)]
    return commands


def test_buf_curl_commands_work_through_reflection_alone(server):
    address, _ = server
    if not (TOOLS / "node_modules" / ".bin" / "buf").exists():
        pytest.skip("tests/tools is not installed (.ci/test runs npm ci there)")
    commands = readme_commands("npx --yes @bufbuild/buf curl")
    assert len(commands) >= 2, commands
    replies = {}
    for command in commands:
        command = command.replace("127.0.0.1:50051", address)
        done = subprocess.run(
            ["sh", "-c", command], cwd=TOOLS, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        replies[command.rsplit("/", 1)[-1]] = json.loads(done.stdout)
    assert replies["Check"] == {"status": "SERVING"}
    assert "jobs" in replies["ListJobs"] or replies["ListJobs"] == {}
