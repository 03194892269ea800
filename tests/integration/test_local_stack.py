"""`make dev`'s start-up: a busy port fails fast and names its setting, a failed or interrupted
start leaves no process behind, and only the stack's own Postgres is ever adopted."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import psycopg
import pytest

from ripple.local.ports import ENV, PortInUse, Ports, bindable
from ripple.local.postgres import LocalPostgres
from ripple.local.stack import ROOT, Stack
from ripple.local.token import DEV_JWT_SECRET
from tests.e2e.readme import quiet_port


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's tmp dir, whose 0700 mode locks out the unprivileged Postgres user.
    path = Path(tempfile.mkdtemp(prefix="ripple-stack-test-"))
    yield path
    LocalPostgres(path / "postgres", 0).stop()  # a failed test must not leave a server behind
    shutil.rmtree(path, ignore_errors=True)


def free_ports() -> dict[str, int]:
    return {name: quiet_port() for name in ENV}


def listener() -> socket.socket:
    """Another program holding a port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def dev(state_dir: Path, ports: dict[str, int], **env: str) -> subprocess.Popen:
    """`make dev` as the Makefile runs it (python -m ripple.local), on the given ports."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RIPPLE_")}
    environ.update({ENV[name]: str(port) for name, port in ports.items()},
                   RIPPLE_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT / "layers" / "ripple"), **env)
    return subprocess.Popen([sys.executable, "-m", "ripple.local"], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def postgres_processes(state_dir: Path) -> list[str]:
    found = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(state_dir) in line and "postgres" in line]


@pytest.mark.parametrize("taken", ["api", "db", "inspector", "mail", "aws"])
def test_a_busy_port_exits_at_once_naming_the_port_and_its_setting(state_dir: Path, taken: str) -> None:
    ports = free_ports()
    with listener() as busy:
        ports[taken] = busy.getsockname()[1]
        proc = dev(state_dir, ports)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, (out, err)
    assert f"Port {ports[taken]} ({ENV[taken]}) is in use" in err
    assert "Traceback" not in err
    assert postgres_processes(state_dir) == []
    assert all(bindable(port) for name, port in ports.items() if name != taken)


def test_a_clean_start_prints_no_warning_and_writes_the_env_file(state_dir: Path) -> None:
    ports = free_ports()
    proc = dev(state_dir, ports)
    try:
        env = wait_for_env(proc, state_dir)
        assert f"export SUPABASE_URL='http://127.0.0.1:{ports['api']}'" in env
        assert f"export RIPPLE_INSPECTOR_URL='http://127.0.0.1:{ports['inspector']}'" in env
        assert "SUPABASE_ANON_KEY=" in env and "DATABASE_URL=" in env
        assert postgres_processes(state_dir)  # the control: it did start a server
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Ripple local stack is up" in out
    assert "Warning" not in err and "XDG_RUNTIME_DIR" not in err, err
    assert postgres_processes(state_dir) == []


def test_ctrl_c_during_start_stops_postgres(state_dir: Path) -> None:
    ports = free_ports()
    proc = dev(state_dir, ports)
    try:
        # Wait until Postgres listens: the moment an interrupted start used to orphan it.
        deadline = time.monotonic() + 60
        while bindable(ports["db"]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert postgres_processes(state_dir) == [], err
    assert bindable(ports["db"])
    assert proc.returncode in (0, 130), err


def test_a_failure_after_postgres_started_stops_it(state_dir: Path) -> None:
    broken = state_dir / "sql"
    broken.mkdir()
    (broken / "001_broken.sql").write_text("select * from no_such_table;")
    ports = Ports(api=0, db=quiet_port(), mail=0, aws=0, inspector=0)
    with pytest.raises(psycopg.errors.UndefinedTable):
        Stack(state_dir=state_dir, ports=ports, sql_dir=broken).start()
    assert bindable(ports.db)
    assert not (state_dir / "postgres" / "postmaster.pid").exists()
    assert postgres_processes(state_dir) == []


def test_another_postgres_on_the_db_port_is_refused_and_left_alone(state_dir: Path) -> None:
    other = LocalPostgres(state_dir / "someone-elses", quiet_port())
    other.start()
    try:
        stack = Stack(state_dir=state_dir / "stack", ports=Ports(api=0, db=other.port, mail=0, aws=0))
        with pytest.raises(PortInUse) as refused:
            stack.start()
        message = str(refused.value)
        assert f"Port {other.port} (RIPPLE_DB_PORT)" in message
        assert "someone-elses" in message and "RIPPLE_DB_URL" in message
        with psycopg.connect(other.url) as conn:  # untouched: no Ripple schema was created
            assert conn.execute("select to_regnamespace('realtime')").fetchone() == (None,)

        # The same server named by RIPPLE_DB_URL is used (and migrated), as asked.
        ports = free_ports()
        proc = dev(state_dir / "stack", ports, RIPPLE_DB_URL=other.url)
        try:
            env = wait_for_env(proc, state_dir / "stack")
            assert f"DATABASE_URL='{other.url}'" in env
            with psycopg.connect(other.url) as conn:
                assert conn.execute("select to_regnamespace('realtime')").fetchone() != (None,)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.communicate(timeout=60)
        assert other.data_directory() is not None  # not ours to stop
    finally:
        other.stop()


def wait_for_env(proc: subprocess.Popen, state_dir: Path) -> str:
    deadline = time.monotonic() + 90
    while not (state_dir / "env").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "make dev did not come up"
        time.sleep(0.2)
    return (state_dir / "env").read_text()


def test_the_stacks_own_postgres_left_running_is_adopted(state_dir: Path) -> None:
    ports = free_ports()
    own = LocalPostgres(state_dir / "postgres", ports["db"])
    own.start()
    proc = dev(state_dir, ports)
    try:
        assert f"DATABASE_URL='{own.url}'" in wait_for_env(proc, state_dir)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert bindable(own.port)  # adopted, so stopped with the stack


def test_ports_come_from_the_environment() -> None:
    ports = Ports.from_env({"RIPPLE_API_PORT": "6001", "RIPPLE_INSPECTOR_PORT": "6003"})
    assert (ports.api, ports.db, ports.inspector, ports.mail, ports.aws) == (6001, 54322, 6003, 54324, 54326)
    assert Ports.from_env({}).inspector == 54323
    with pytest.raises(ValueError, match="RIPPLE_DB_PORT must be a port number"):
        Ports.from_env({"RIPPLE_DB_PORT": "fifty"})


def run_make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_make_token_prints_a_signed_user_jwt() -> None:
    sub = "5f1c6b1e-8f7a-4a43-9d51-3c2a7e0b9d10"
    done = run_make("token", f"SUB={sub}", 'CLAIMS={"organization_id": 7}')
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"],
                        options={"verify_aud": False})
    assert (claims["sub"], claims["role"], claims["organization_id"]) == (sub, "authenticated", 7)
    assert claims["exp"] > time.time()
    service = run_make("token", "ROLE=service_role")
    assert jwt.decode(service.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"],
                      options={"verify_aud": False})["role"] == "service_role"
    for bad in (["token"], ["token", "SUB=not-a-uuid"], ["token", f"SUB={sub}", "ROLE=admin"]):
        refused = run_make(*bad)
        assert refused.returncode != 0 and "make token:" in refused.stderr, bad
