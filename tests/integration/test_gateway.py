"""The local gateway against real WebSocket clients and boto3's management API client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import boto3
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ripple.local.gateway import Gateway, Limits, Routes

pytestmark = pytest.mark.timeout(30)


class Backend:
    """Lambda-style handlers that record their events and act on the message body.

    `$connect` refuses with 401 when the query has `reject`, raises when it has `explode`.
    `$default`: "echo:<text>" posts <text> back, "burst:<n>" posts 0..n-1, "boom" raises,
    "hold" waits until `release` is set and then posts "released"; anything else is recorded.
    """

    def __init__(self) -> None:
        self.api = None
        self.connects: list[dict] = []
        self.messages: list[dict] = []
        self.disconnects: list[dict] = []
        self.disconnected = threading.Condition()
        self.release = threading.Event()
        # When set, each $disconnect waits here until as many are running at once.
        self.disconnect_gate: threading.Barrier | None = None

    def connect(self, event: dict, context) -> dict:
        self.connects.append(event)
        query = event["queryStringParameters"] or {}
        if "explode" in query:
            raise RuntimeError("connect failed")
        if "reject" in query:
            return {"statusCode": 401, "body": "Unauthorized"}
        return {"statusCode": 200}

    def default(self, event: dict, context) -> dict:
        self.messages.append(event)
        connection_id = event["requestContext"]["connectionId"]
        body = event["body"]
        if body == "boom":
            raise RuntimeError("handler failed")
        if body == "hold":
            self.release.wait(5)
            self.post(connection_id, "released")
        elif body.startswith("echo:"):
            self.post(connection_id, body.removeprefix("echo:"))
        elif body.startswith("burst:"):
            for n in range(int(body.removeprefix("burst:"))):
                self.post(connection_id, str(n))
        return {"statusCode": 200}

    def disconnect(self, event: dict, context) -> dict:
        if self.disconnect_gate is not None:
            self.disconnect_gate.wait(10)
        with self.disconnected:
            self.disconnects.append(event)
            self.disconnected.notify_all()
        return {"statusCode": 200}

    def post(self, connection_id: str, text: str) -> None:
        self.api.post_to_connection(ConnectionId=connection_id, Data=text.encode())

    def connection_id(self) -> str:
        return self.connects[-1]["requestContext"]["connectionId"]

    def wait_disconnect(self, connection_id: str, timeout: float = 5.0) -> dict:
        """The $disconnect event of `connection_id`, once it has run."""
        with self.disconnected:
            found = self.disconnected.wait_for(
                lambda: self.disconnects_of(connection_id), timeout
            )
        assert found, f"no $disconnect for {connection_id}"
        return self.disconnects_of(connection_id)[0]

    def disconnects_of(self, connection_id: str) -> list[dict]:
        return [
            e for e in self.disconnects if e["requestContext"]["connectionId"] == connection_id
        ]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on a background thread, so tests can use blocking clients."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


class Stack:
    """A started gateway, its backend, and a boto3 management client pointed at it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gateway: Gateway, backend: Backend):
        self.loop = loop
        self.gateway = gateway
        self.backend = backend
        self.api = boto3.client(
            "apigatewaymanagementapi", endpoint_url=gateway.url, region_name="us-east-1"
        )
        backend.api = self.api

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def client(self, query: str = "", **kwargs) -> tuple[ClientConnection, str]:
        """An open client socket and its connection id."""
        ws = connect(self.gateway.ws_url + query, ping_interval=None, open_timeout=5, **kwargs)
        return ws, self.backend.connection_id()

    def stuck_client(self) -> tuple[ClientConnection, str]:
        """A client that stops reading: websockets stops taking frames off the socket once one
        is waiting unread, and a small receive buffer keeps the kernel from holding many more."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect(("127.0.0.1", self.gateway.port))
        # Its close would wait on the unread frames; the test is done with it by then.
        return self.client(sock=sock, max_queue=1, close_timeout=0.1)


@pytest.fixture
def make_stack(loop, aws_env) -> Iterator:
    stacks: list[Stack] = []

    def make(**options) -> Stack:
        backend = Backend()
        routes = Routes(backend.connect, backend.default, backend.disconnect)
        gateway = Gateway(routes, **options)
        asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(10)
        stack = Stack(loop, gateway, backend)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.backend.release.set()
        stack.run(stack.gateway.stop())


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()


def closed_code(ws: ClientConnection, send: str | bytes | list[str] | None = None) -> int:
    """Send `send` if given, read until the server closes; the close code the client received.

    The close may surface during the send itself, when it lands between fragments.
    """
    with pytest.raises(ConnectionClosed) as closed:
        if send is not None:
            ws.send(send)
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code


def http(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_urls_name_the_bound_port(stack: Stack) -> None:
    port = stack.gateway.port
    assert port > 0
    assert stack.gateway.url == f"http://127.0.0.1:{port}"
    assert stack.gateway.ws_url == f"ws://127.0.0.1:{port}/realtime/v1/websocket"


def test_connect_event_has_the_api_gateway_shape(stack: Stack) -> None:
    ws, connection_id = stack.client(
        "?apikey=secret&vsn=1.0.0&x=1&x=2",
        additional_headers={"X-Client-Info": "test"},
        user_agent_header="ripple-test",
    )
    with ws:
        event = stack.backend.connects[-1]
        context = event["requestContext"]
        assert event["isBase64Encoded"] is False
        assert event["queryStringParameters"] == {"apikey": "secret", "vsn": "1.0.0", "x": "2"}
        assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
        assert event["headers"]["X-Client-Info"] == "test"
        assert event["multiValueHeaders"]["X-Client-Info"] == ["test"]
        assert event["headers"]["Sec-WebSocket-Version"] == "13"
        assert context["routeKey"] == "$connect"
        assert context["eventType"] == "CONNECT"
        assert context["messageDirection"] == "IN"
        assert context["stage"] == "local"
        assert context["apiId"] == "local"
        assert context["domainName"] == f"127.0.0.1:{stack.gateway.port}"
        assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "ripple-test"}
        assert context["connectionId"] == connection_id
        assert len(connection_id) == 16 and connection_id.endswith("=")
        assert context["requestId"] and context["extendedRequestId"]
        assert isinstance(context["connectedAt"], int)
        assert abs(context["requestTimeEpoch"] - time.time() * 1000) < 5000
        datetime.strptime(context["requestTime"], "%d/%b/%Y:%H:%M:%S %z")


def test_connect_without_query_has_null_parameters(stack: Stack) -> None:
    ws, _ = stack.client()
    with ws:
        event = stack.backend.connects[-1]
        assert event["queryStringParameters"] is None
        assert event["multiValueQueryStringParameters"] is None


def test_trailing_slash_is_accepted(stack: Stack) -> None:
    with connect(stack.gateway.ws_url + "/", ping_interval=None) as ws:
        ws.send("echo:slash")
        assert ws.recv(timeout=5) == "slash"


def test_refused_connect_answers_the_handlers_status(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.gateway.ws_url + "?reject=1", open_timeout=5)
    assert refused.value.response.status_code == 401
    connection_id = stack.backend.connection_id()
    time.sleep(0.2)
    assert stack.backend.disconnects_of(connection_id) == []
    with pytest.raises(stack.api.exceptions.GoneException):
        stack.api.get_connection(ConnectionId=connection_id)


def test_failing_connect_answers_500(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.gateway.ws_url + "?explode=1", open_timeout=5)
    assert refused.value.response.status_code == 500


def test_plain_http_on_the_websocket_path_is_426(stack: Stack) -> None:
    status, _ = http(stack.gateway.ws_url.replace("ws://", "http://"))
    assert status == 426


def test_message_event_and_echo_through_the_management_api(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        ws.send("echo:hello")
        assert ws.recv(timeout=5) == "hello"
        event = stack.backend.messages[-1]
        context = event["requestContext"]
        assert event["body"] == "echo:hello"
        assert event["isBase64Encoded"] is False
        assert context["routeKey"] == "$default"
        assert context["eventType"] == "MESSAGE"
        assert context["messageId"]
        assert context["connectionId"] == connection_id
        assert context["connectedAt"] == stack.backend.connects[-1]["requestContext"]["connectedAt"]


def test_posts_reach_the_client_in_order(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        ws.send("burst:100")
        assert [ws.recv(timeout=5) for _ in range(100)] == [str(n) for n in range(100)]
        for n in range(50):
            stack.backend.post(connection_id, f"direct {n}")
        assert [ws.recv(timeout=5) for _ in range(50)] == [f"direct {n}" for n in range(50)]


def test_messages_of_a_connection_are_handled_in_order(stack: Stack) -> None:
    ws, _ = stack.client()
    with ws:
        for n in range(30):
            ws.send(f"echo:{n}")
        assert [ws.recv(timeout=5) for _ in range(30)] == [str(n) for n in range(30)]


def test_connections_are_handled_concurrently(stack: Stack) -> None:
    held, _ = stack.client()
    other, _ = stack.client()
    with held, other:
        held.send("hold")
        other.send("echo:not blocked")
        assert other.recv(timeout=5) == "not blocked"
        stack.backend.release.set()
        assert held.recv(timeout=5) == "released"


def test_a_client_that_stops_reading_holds_up_no_one_and_is_closed_past_its_buffer(
    make_stack,
) -> None:
    stack = make_stack(limits=Limits(send_buffer_bytes=256 * 1024))
    control, control_id = stack.client()
    stuck, stuck_id = stack.stuck_client()
    frame = b"x" * (128 * 1024)
    accepted = 0
    with control, stuck:
        for n in range(2000):  # 125 MB: far more than the socket buffers and the send buffer
            try:
                stack.api.post_to_connection(ConnectionId=stuck_id, Data=frame)
            except stack.api.exceptions.GoneException:
                break
            accepted += 1
            stack.backend.post(control_id, f"control {n}")
            assert control.recv(timeout=5) == f"control {n}"
        else:
            pytest.fail("the client that does not read was never closed")
        # The socket took frames before the send buffer filled: it was the buffer that tripped.
        assert accepted > 256 * 1024 // len(frame)
        context = stack.backend.wait_disconnect(stuck_id)["requestContext"]
        assert context["disconnectStatusCode"] == 1008
        assert context["disconnectReason"] == "Slow reader: send buffer full"
        with pytest.raises(stack.api.exceptions.GoneException):
            stack.api.post_to_connection(ConnectionId=stuck_id, Data=b"later")
        with pytest.raises(stack.api.exceptions.GoneException):
            stack.api.get_connection(ConnectionId=stuck_id)
        stack.backend.post(control_id, "after")
        assert control.recv(timeout=5) == "after"


def test_a_slow_reader_gets_every_buffered_frame_in_order(stack: Stack) -> None:
    ws, connection_id = stack.stuck_client()
    frames = [f"{n:05d}".encode() * 3000 for n in range(300)]  # 4.5 MB, more than sockets hold
    with ws:
        for data in frames:
            stack.api.post_to_connection(ConnectionId=connection_id, Data=data)
        assert [ws.recv(timeout=5) for _ in frames] == [data.decode() for data in frames]


def test_frames_posted_before_a_delete_arrive_before_the_close(stack: Stack) -> None:
    ws, connection_id = stack.client()
    for n in range(50):
        stack.backend.post(connection_id, f"before {n}")
    stack.api.delete_connection(ConnectionId=connection_id)
    assert [ws.recv(timeout=5) for _ in range(50)] == [f"before {n}" for n in range(50)]
    assert closed_code(ws) == 1000


def test_stop_drops_a_client_that_does_not_read(make_stack) -> None:
    stack = make_stack()
    ws, connection_id = stack.stuck_client()
    with ws:
        for n in range(300):  # 4.5 MB: more than the sockets hold, so frames stay queued
            stack.api.post_to_connection(ConnectionId=connection_id, Data=b"%05d" % n * 3000)
        stack.run(stack.gateway.stop())
        context = stack.backend.disconnects_of(connection_id)[0]["requestContext"]
        assert context["disconnectStatusCode"] == 1001


def test_many_sockets_closing_at_once_each_get_their_disconnect(stack: Stack) -> None:
    # Each $disconnect waits until 32 run at once: a handful of threads would never get there.
    stack.backend.disconnect_gate = threading.Barrier(32)
    clients = [stack.client() for _ in range(128)]
    for ws, _ in clients:
        ws.close()
    for _, connection_id in clients:
        stack.backend.wait_disconnect(connection_id, timeout=15)
    assert not stack.backend.disconnect_gate.broken
    assert sorted(e["requestContext"]["connectionId"] for e in stack.backend.disconnects) == sorted(
        connection_id for _, connection_id in clients
    )


def test_non_utf8_post_arrives_as_a_binary_frame(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        stack.api.post_to_connection(ConnectionId=connection_id, Data=b"\xff\x00")
        assert ws.recv(timeout=5) == b"\xff\x00"


def test_stage_prefixed_endpoint_works_too(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        api = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"{stack.gateway.url}/local",
            region_name="us-east-1",
        )
        api.post_to_connection(ConnectionId=connection_id, Data=b"via stage")
        assert ws.recv(timeout=5) == "via stage"


def test_get_connection_reports_identity_and_times(stack: Stack) -> None:
    ws, connection_id = stack.client(user_agent_header="ripple-test")
    with ws:
        info = stack.api.get_connection(ConnectionId=connection_id)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ripple-test"}
        assert isinstance(info["ConnectedAt"], datetime)
        assert info["LastActiveAt"] >= info["ConnectedAt"]


def test_gone_after_the_client_leaves(stack: Stack) -> None:
    ws, connection_id = stack.client()
    ws.close()
    stack.backend.wait_disconnect(connection_id)
    with pytest.raises(stack.api.exceptions.GoneException):
        stack.api.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(stack.api.exceptions.GoneException):
        stack.api.get_connection(ConnectionId=connection_id)
    with pytest.raises(stack.api.exceptions.GoneException):
        stack.api.delete_connection(ConnectionId=connection_id)
    with pytest.raises(stack.api.exceptions.GoneException):
        stack.api.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"never")


def test_oversize_post_is_payload_too_large(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        with pytest.raises(stack.api.exceptions.PayloadTooLargeException):
            stack.api.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))
        stack.api.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024))
        assert len(ws.recv(timeout=5)) == 128 * 1024


def test_delete_closes_the_socket_and_runs_disconnect_once(stack: Stack) -> None:
    ws, connection_id = stack.client()
    stack.api.delete_connection(ConnectionId=connection_id)
    assert closed_code(ws) == 1000
    event = stack.backend.wait_disconnect(connection_id)
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1000
    assert context["disconnectReason"] == "Connection Closed Normally"
    assert event["headers"]["Host"] == f"127.0.0.1:{stack.gateway.port}"
    assert event["isBase64Encoded"] is False
    time.sleep(0.2)
    assert len(stack.backend.disconnects_of(connection_id)) == 1


def test_client_close_runs_disconnect_once_with_its_code(stack: Stack) -> None:
    ws, connection_id = stack.client()
    ws.close(code=4000, reason="bye")
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "bye")
    time.sleep(0.2)
    assert len(stack.backend.disconnects_of(connection_id)) == 1


def test_dropped_tcp_link_runs_disconnect_with_1006(stack: Stack) -> None:
    ws, connection_id = stack.client()
    ws.socket.shutdown(socket.SHUT_RDWR)
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert context["disconnectStatusCode"] == 1006
    ws.close()


def test_handler_exception_sends_internal_server_error_and_keeps_the_socket(stack: Stack) -> None:
    ws, connection_id = stack.client()
    with ws:
        ws.send("boom")
        error = json.loads(ws.recv(timeout=5))
        assert error["message"] == "Internal server error"
        assert error["connectionId"] == connection_id
        assert error["requestId"] == stack.backend.messages[-1]["requestContext"]["requestId"]
        ws.send("echo:still here")
        assert ws.recv(timeout=5) == "still here"


def test_binary_frame_closes_with_1003(stack: Stack) -> None:
    ws, connection_id = stack.client()
    assert closed_code(ws, b"\x01\x02") == 1003
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert context["disconnectStatusCode"] == 1003
    assert context["disconnectReason"] == "Unsupported data"


def test_message_at_the_limit_passes_and_over_it_closes_with_1009(make_stack) -> None:
    stack = make_stack(limits=Limits(max_message_bytes=1024))
    ws, connection_id = stack.client()
    ws.send("a" * 1024)
    ws.send("echo:ok")
    assert ws.recv(timeout=5) == "ok"
    assert stack.backend.messages[0]["body"] == "a" * 1024
    assert closed_code(ws, "a" * 1025) == 1009
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert context["disconnectStatusCode"] == 1009
    assert context["disconnectReason"] == "Message too big"


def test_fragmented_message_over_the_limit_closes_with_1009(make_stack) -> None:
    stack = make_stack(limits=Limits(max_message_bytes=1024))
    ws, _ = stack.client()
    assert closed_code(ws, ["a" * 600, "a" * 600]) == 1009


def test_default_limit_is_128_kb_in_frames_of_32_kb(stack: Stack) -> None:
    ws, _ = stack.client(max_size=None)
    ws.send(["a" * (32 * 1024)] * 4)
    ws.send("echo:ok")
    assert ws.recv(timeout=5) == "ok"
    assert len(stack.backend.messages[0]["body"]) == 128 * 1024
    assert closed_code(ws, ["a" * (32 * 1024)] * 4 + ["a"]) == 1009


def test_a_single_frame_over_32_kb_closes_with_1009(stack: Stack) -> None:
    ws, connection_id = stack.client()
    ws.send("a" * (32 * 1024))  # at the quota: passes
    ws.send("echo:ok")
    assert ws.recv(timeout=5) == "ok"
    assert closed_code(ws, "a" * (32 * 1024 + 1)) == 1009
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert context["disconnectStatusCode"] == 1009
    assert [len(e["body"]) for e in stack.backend.messages] == [32 * 1024, len("echo:ok")]


def test_frame_quota_applies_to_each_fragment(make_stack) -> None:
    stack = make_stack(limits=Limits(max_frame_bytes=100))
    ws, _ = stack.client()
    ws.send(["a" * 100, "b" * 100, "c" * 50])  # a 250-byte message in quota-sized frames
    ws.send("echo:ok")
    assert ws.recv(timeout=5) == "ok"
    assert stack.backend.messages[0]["body"] == "a" * 100 + "b" * 100 + "c" * 50
    assert closed_code(ws, ["a" * 100, "b" * 101]) == 1009
    assert len(stack.backend.messages) == 2


def test_idle_connection_closes_with_1001(make_stack) -> None:
    stack = make_stack(limits=Limits(idle_timeout=0.5))
    ws, connection_id = stack.client()
    started = time.monotonic()
    assert closed_code(ws) == 1001
    assert 0.4 < time.monotonic() - started < 2.0
    context = stack.backend.wait_disconnect(connection_id)["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")


def test_activity_keeps_a_connection_open(make_stack) -> None:
    stack = make_stack(limits=Limits(idle_timeout=0.5))
    ws, connection_id = stack.client()
    with ws:
        for _ in range(3):
            time.sleep(0.3)
            ws.send("tick")
        for _ in range(3):
            time.sleep(0.3)
            assert ws.ping().wait(1)
        for _ in range(3):
            time.sleep(0.3)
            stack.backend.post(connection_id, "tock")
            assert ws.recv(timeout=1) == "tock"
        stack.api.get_connection(ConnectionId=connection_id)


def test_connection_older_than_the_maximum_closes_with_1001(make_stack) -> None:
    stack = make_stack(limits=Limits(idle_timeout=10, max_connection_seconds=0.8))
    ws, _ = stack.client()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.send("tick")
            time.sleep(0.1)
    assert closed.value.rcvd.code == 1001
    assert 0.7 < time.monotonic() - started < 2.0


def test_stop_closes_every_socket_and_runs_each_disconnect(make_stack) -> None:
    stack = make_stack()
    clients = [stack.client() for _ in range(3)]
    stack.run(stack.gateway.stop())
    for ws, connection_id in clients:
        assert closed_code(ws) == 1001
        assert len(stack.backend.disconnects_of(connection_id)) == 1


def test_stop_waits_for_disconnects_only_so_long(make_stack, monkeypatch) -> None:
    """Ten thousand $disconnects outlast any stop; past STOP_SECONDS the gateway stops anyway."""
    from ripple.local import gateway as module

    monkeypatch.setattr(module, "STOP_SECONDS", 0.5)
    stack = make_stack()
    stack.backend.disconnect_gate = threading.Barrier(2)  # its only $disconnect waits (10 s)
    ws, connection_id = stack.client()
    started = time.monotonic()
    try:
        stack.run(stack.gateway.stop())
        elapsed = time.monotonic() - started
        assert closed_code(ws) == 1001
        assert 0.4 < elapsed < 3.0
        assert stack.backend.disconnects_of(connection_id) == []  # still running when it stopped
        with pytest.raises(urllib.error.URLError):
            http(stack.gateway.url + "/health")
    finally:
        stack.backend.disconnect_gate.abort()


def test_health_follows_readiness(make_stack) -> None:
    state = {"ready": False}
    stack = make_stack(ready=lambda: state["ready"])
    assert http(stack.gateway.url + "/health")[0] == 503
    state["ready"] = True
    assert http(stack.gateway.url + "/health") == (200, b'{"status": "ok"}')
