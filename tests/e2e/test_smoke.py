"""`make smoke` against the local stack: every step passes, and a wrong key fails the first step."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from ripple.local.stack import ROOT

pytestmark = pytest.mark.e2e
SMOKE = [sys.executable, str(ROOT / "bench" / "smoke.py")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SMOKE, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def stack_args(stack, anon: str) -> list[str]:
    return ["--ws-url", stack.ws_url, "--rest-url", stack.api_url, "--anon-key", anon,
            "--service-key", stack.key("service_role"), "--db-url", stack.db_url, "--timeout", "20"]


def test_the_smoke_test_passes_every_step_against_the_local_stack(stack):
    address = f"smoke-{uuid.uuid4().hex[:8]}@ripple.test"
    done = run(*stack_args(stack, stack.key("anon")), "--email", address)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert steps == ["connect", "subscribe", "write", "broadcast", "broadcast", "presence", "notification"]
    assert all(" ms " in line for line in done.stdout.splitlines() if line.startswith("ok "))
    assert done.stdout.rstrip().endswith("smoke test passed")


def test_a_wrong_key_fails_the_first_step(stack):
    done = run(*stack_args(stack, "not-a-jwt"))
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL  connect")
    assert "smoke test failed" in done.stderr


def test_make_smoke_without_arguments_documents_itself():
    done = subprocess.run(["make", "-s", "smoke"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for option in ("--local", "--ws-url", "--rest-url", "--anon-key", "--service-key", "--db-url", "--email"):
        assert option in done.stdout
