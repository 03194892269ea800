"""Shared fixtures: one local stack per test session, on free ports."""
from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from ripple.local.stack import Ports, Stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    """The whole local stack (Postgres, moto, gateway, bridge), never on `make dev`'s ports."""
    state = Path(tmp_path_factory.mktemp("ripple-state"))
    running = Stack(state_dir=state, ports=Ports(api=0, db=free_port(), aws=0, mail=0), sweep_seconds=1.0).start()
    yield running
    running.stop()


@pytest.fixture
def db(stack) -> psycopg.Connection:
    """An autocommit connection to the stack's database, as an app would write."""
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        yield conn
