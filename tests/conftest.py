"""Shared fixtures: one local stack per test session, on free ports."""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest

from ripple.local.stack import Ports, Stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The whole local stack (Postgres, moto, gateway, bridge), never on `make dev`'s ports."""
    # Not under pytest's tmp dir: pytest resets its mode to 0700, which locks out the
    # unprivileged user the embedded Postgres runs as.
    state = Path(tempfile.mkdtemp(prefix="ripple-test-"))
    running = Stack(state_dir=state, ports=Ports(api=0, db=free_port(), aws=0, mail=0, inspector=0), sweep_seconds=1.0).start()
    yield running
    running.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(params=["current", "oldest"])
def supabase_js(request) -> str:
    """Runs the test with each supabase-js release under test: the current one and the oldest
    the README supports (tests/js/package.json)."""
    return request.param


@pytest.fixture
def db(stack) -> psycopg.Connection:
    """An autocommit connection to the stack's database, as an app would write."""
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        yield conn
