"""`Stack(gateway_process=True)`: the gateway and its route handlers in a child process, the fanout
in the stack's. Clients see the same stack as in one process; the child never outlives it."""
from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ripple.local.gatewayd import GatewayFailed, GatewayProcess
from ripple.local.postgres import LocalPostgres
from ripple.local.stack import ROOT, Stack
from tests.e2e.readme import quiet_port
from tests.e2e.tables import published
from tests.e2e.wire import Wire

TOPIC = "realtime:split"
ITEMS = {"event": "INSERT", "schema": "public", "table": "split_items"}


def new_state_dir() -> Path:
    # Not under pytest's tmp dir, whose 0700 mode locks out the unprivileged Postgres user.
    return Path(tempfile.mkdtemp(prefix="ripple-split-test-"))


def remove_state_dir(path: Path) -> None:
    LocalPostgres(path / "postgres", 0).stop()  # a failed test must not leave a server behind
    shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie nobody has reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def eventually(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def gatewayd_children(parent: int) -> list[int]:
    """The `ripple.local.gatewayd` processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == parent and b"ripple.local.gatewayd" in cmdline:
            found.append(int(entry.name))
    return found


# Each stack runs in a process of its own, as `make dev` does: the handlers' settings and clients
# are process-wide singletons, so one process holds one stack.
HOST = """
import json, sys
from pathlib import Path
from ripple.local.stack import Ports, Stack

def say(**message):
    print("HOST " + json.dumps(message), flush=True)

state, db, mail, split = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
stack = Stack(state_dir=Path(state), ports=Ports(api=0, db=db, aws=0, mail=mail), sweep_seconds=1.0,
              gateway_process=split)
try:
    stack.start()
except Exception as error:
    say(error=type(error).__name__, detail=str(error))
    sys.stdin.read()  # stays up until told, so that the test sees what it left behind
    sys.exit(1)
say(ws_url=stack.ws_url, api_url=stack.api_url, db_url=stack.db_url, anon=stack.key("anon"),
    service_role=stack.key("service_role"), gateway_pid=getattr(stack.gateway, "pid", None))
for line in sys.stdin:
    if line.strip() == "runs":
        say(runs=sum(1 for run in stack.bridge.results if run.get("changes")))
    elif line.strip() == "stop":
        break
stack.stop()
say(stopped=True)
"""


class Host:
    """A process running one stack (`gateway_process` as given); its messages arrive on a queue."""

    def __init__(self, state: Path, *, split: bool, mail: int = 0, **settings: str):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "ripple"),
               "POWERTOOLS_LOG_LEVEL": "WARNING", **settings}
        env.pop("RIPPLE_LOCAL_GATEWAY_PROCESS", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOST, str(state), str(quiet_port()), str(mail), "1" if split else "0"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.messages: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # the stack's logs share the pipe; they are skipped
            if line.startswith("HOST "):
                self.messages.put(json.loads(line[5:]))

    def next(self, timeout: float = 120.0) -> dict:
        return self.messages.get(timeout=timeout)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def state() -> Iterator[Path]:
    path = new_state_dir()
    yield path
    remove_state_dir(path)


@pytest.fixture(scope="module", params=[True, False], ids=["gateway-process", "in-process"])
def hosted(request) -> Iterator[tuple[Host, dict]]:
    """A split stack, and as the control the same stack in one process."""
    path = new_state_dir()
    host = Host(path, split=request.param)
    try:
        up = host.next()
        assert "error" not in up, up
        yield host, up
    finally:
        host.end()
        remove_state_dir(path)


def post_broadcast(up: dict, topic: str, payload: dict) -> int:
    body = {"messages": [{"topic": topic, "event": "announcement", "payload": payload}]}
    request = urllib.request.Request(f"{up['api_url']}/realtime/v1/api/broadcast", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"apikey": up["service_role"],
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def test_a_subscriber_gets_changes_and_broadcasts_whichever_process_runs_the_gateway(hosted) -> None:
    host, up = hosted
    if up["gateway_pid"] is not None:
        assert up["gateway_pid"] != host.process.pid and alive(up["gateway_pid"])
        assert gatewayd_children(host.process.pid) == [up["gateway_pid"]]
    else:
        assert gatewayd_children(host.process.pid) == []
    with urllib.request.urlopen(f"{up['api_url']}/health", timeout=10) as health:
        assert health.status == 200
    with psycopg.connect(up["db_url"], autocommit=True) as db:
        published(db, "split_items", "title text")
        subscriber, sender = Wire(up["ws_url"], up["anon"]), Wire(up["ws_url"], up["anon"])
        try:
            reply, system = subscriber.join(TOPIC, [ITEMS])
            assert reply["payload"]["status"] == "ok" and system is not None
            assert system["payload"]["status"] == "ok", system
            sender.join(TOPIC, [])

            db.execute("insert into public.split_items (title) values ('across')")
            change = subscriber.recv()
            assert change["event"] == "postgres_changes", change
            assert change["payload"]["data"]["record"]["title"] == "across"

            sender.send(TOPIC, "broadcast", {"type": "broadcast", "event": "hello",
                                             "payload": {"from": "sender"}}, join_ref="j" + TOPIC)
            relayed = subscriber.recv()
            assert relayed["event"] == "broadcast" and relayed["payload"]["payload"] == {"from": "sender"}

            assert post_broadcast(up, "split", {"from": "rest"}) == 202
            pushed = subscriber.recv()
            assert pushed["event"] == "broadcast" and pushed["payload"]["payload"] == {"from": "rest"}
        finally:
            subscriber.close()
            sender.close()
    # The fanout that posted the change ran in the stack's process, on its bridge.
    assert eventually(lambda: host.send("runs") or host.next()["runs"] > 0)


@pytest.mark.parametrize("split", [True, False], ids=["gateway-process", "in-process"])
def test_the_fanout_posts_through_the_poster_function_served_next_to_the_gateway(
        state: Path, split: bool) -> None:
    # Every round sharded and sent by Lambda Invoke: the change arrives only if the fanout here
    # reaches the Invoke API, and the poster behind it the gateway's @connections.
    host = Host(state, split=split, RIPPLE_SHARD_TRANSPORT="lambda", RIPPLE_POSTER_SHARDS="2",
                RIPPLE_SHARD_THRESHOLD="1")
    try:
        up = host.next()
        assert "error" not in up, up
        with psycopg.connect(up["db_url"], autocommit=True) as db:
            published(db, "split_items", "title text")
            subscriber = Wire(up["ws_url"], up["anon"])
            try:
                reply, system = subscriber.join(TOPIC, [ITEMS])
                assert system is not None and system["payload"]["status"] == "ok", (reply, system)
                db.execute("insert into public.split_items (title) values ('posted')")
                change = subscriber.recv(timeout=30)
                assert change["event"] == "postgres_changes", change
                assert change["payload"]["data"]["record"]["title"] == "posted"
            finally:
                subscriber.close()
    finally:
        host.end()


def test_stop_ends_the_gateway_process(state: Path) -> None:
    host = Host(state, split=True)
    try:
        up = host.next()
        child = up["gateway_pid"]
        assert alive(child) and gatewayd_children(host.process.pid) == [child]
        host.send("stop")
        assert host.next() == {"stopped": True}
        assert not alive(child)  # gone (and reaped) by the time stop() returned
        assert host.process.wait(timeout=30) == 0
    finally:
        host.end()


def test_the_environment_variable_turns_the_split_on(monkeypatch) -> None:
    monkeypatch.setenv("RIPPLE_LOCAL_GATEWAY_PROCESS", "1")
    assert Stack(state_dir=Path("unused")).gateway_process is True
    monkeypatch.setenv("RIPPLE_LOCAL_GATEWAY_PROCESS", "0")
    assert Stack(state_dir=Path("unused")).gateway_process is False
    monkeypatch.delenv("RIPPLE_LOCAL_GATEWAY_PROCESS")
    assert Stack(state_dir=Path("unused")).gateway_process is False


def test_the_gateway_process_exits_when_its_parent_is_killed(state: Path) -> None:
    host = Host(state, split=True)
    child = None
    try:
        up = host.next()
        child = up["gateway_pid"]
        assert alive(child) and gatewayd_children(host.process.pid) == [child]
        host.process.kill()
        host.process.wait(timeout=10)
        assert wait_gone(child), f"gateway process {child} outlived its killed parent"
    finally:
        host.end()
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)  # a failed test leaves no process behind


def test_a_start_that_fails_after_the_gateway_process_started_leaves_no_child(state: Path) -> None:
    mail = quiet_port()
    holder = socket.socket()
    host = Host(state, split=True, mail=mail)
    try:
        # After the stack probed its ports and before its mailbox binds, another program takes
        # the mail port: the stack fails with its gateway process already running.
        deadline = time.monotonic() + 120
        while not (spawned := gatewayd_children(host.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert spawned, "the gateway process never started"
        holder.bind(("127.0.0.1", mail))
        holder.listen()
        failed = host.next()
        assert failed.get("error") == "OSError", failed
        assert host.process.poll() is None  # the stack's process is still there, its child is not
        assert not alive(spawned[0])
        assert gatewayd_children(host.process.pid) == []
    finally:
        holder.close()
        host.end()


def test_a_gateway_process_that_cannot_bind_its_port_is_gone_with_the_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        gateway = GatewayProcess(port=busy.getsockname()[1])
        with pytest.raises(GatewayFailed) as failed:
            gateway.start()
    assert failed.value.errno == errno.EADDRINUSE
    assert gateway.process is None
    assert gatewayd_children(os.getpid()) == []
