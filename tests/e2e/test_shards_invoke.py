"""Sharded posting through the poster function: boto3's real Invoke calls (over HTTP to the local
stack's Lambda API) run the real poster handler, which posts through the local gateway to real
WebSocket clients; what goes wrong comes back as ShardFailed with its reason."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator

import boto3
import pytest

from ripple.aws import invoke_client
from ripple.config import settings
from ripple.gateway import Delivery
from ripple.local.gateway import LambdaContext, new_id
from ripple.local.stack import POSTER_FUNCTION, REGION, load_handler
from ripple.shards import poster
from ripple.shards.invoke import LambdaTransport
from ripple.shards.wire import ShardFailed, shard_of, split
from ripple.store import store
from tests.e2e.wire import Wire

pytestmark = pytest.mark.e2e


def frame(topic: str, n: int, pad: str = "") -> str:
    return json.dumps({"topic": topic, "event": "broadcast", "ref": None,
                       "payload": {"type": "broadcast", "event": "shard", "payload": {"n": n, "pad": pad}}})


def received(wire: Wire, count: int) -> list[int]:
    return [wire.recv()["payload"]["payload"]["n"] for _ in range(count)]


@contextlib.contextmanager
def subscribers(stack, count: int, prefix: str) -> Iterator[list[tuple[Wire, str, str]]]:
    """`count` sockets, each the only member of its own topic: (wire, topic, connection id)."""
    wires: list[Wire] = []
    subs: list[tuple[Wire, str, str]] = []
    try:
        for index in range(count):
            wires.append(wire := Wire(stack.ws_url, stack.key("anon")))
            topic = f"realtime:{prefix}-{index}"
            wire.join(topic, [])
            (member,) = store().members(topic)
            subs.append((wire, topic, member.connection_id))
        yield subs
    finally:
        for wire in wires:
            wire.close()


@contextlib.contextmanager
def poster_posting_to(endpoint: str | None) -> Iterator[None]:
    """The poster function's container with RIPPLE_CONNECTIONS_ENDPOINT set to `endpoint` (unset
    when None), as a misconfigured or cut-off deployment would have it; restored after."""
    saved = os.environ.get("RIPPLE_CONNECTIONS_ENDPOINT")
    if endpoint is None:
        os.environ.pop("RIPPLE_CONNECTIONS_ENDPOINT", None)
    else:
        os.environ["RIPPLE_CONNECTIONS_ENDPOINT"] = endpoint
    settings.cache_clear()
    poster._container_api.cache_clear()
    try:
        yield
    finally:
        if saved is not None:
            os.environ["RIPPLE_CONNECTIONS_ENDPOINT"] = saved
        settings.cache_clear()
        poster._container_api.cache_clear()


@pytest.fixture
def transport(stack) -> Iterator[LambdaTransport]:
    sent = LambdaTransport(settings().poster_function or "")
    yield sent
    sent.close()


def test_each_shard_is_one_invocation_and_every_connection_gets_its_frames_in_order(stack, transport):
    assert transport.function_name == POSTER_FUNCTION
    with subscribers(stack, 9, "shards-order") as subs:
        deliveries = [Delivery(cid, [frame(topic, n) for n in range(6)]) for _, topic, cid in subs]
        shards = split(deliveries, 3)
        before = stack.functions.invocations[POSTER_FUNCTION]
        results = transport.post(shards, timeout=30)
        assert stack.functions.invocations[POSTER_FUNCTION] - before == sum(1 for s in shards if s)
        assert len(results) == 3
        for shard, (outcome, posts) in zip(shards, results):
            assert outcome.delivered == posts == 6 * len(shard)
            assert (outcome.gone, outcome.owed, outcome.failed) == ([], [], 0)
        for wire, _, _ in subs:
            assert received(wire, 6) == list(range(6))


def test_the_shards_invocations_run_at_the_same_time(stack):
    real = load_handler("poster").handler
    # Each poster waits for all K to have started: invoked one after another, the first would
    # wait in vain and fail its shard.
    started = threading.Barrier(4, timeout=20)

    def together(event, context):
        started.wait()
        return real(event, context)

    with subscribers(stack, 4, "shards-together") as subs, function(stack, "ripple-poster-together", together) as sent:
        results = sent.post([[Delivery(cid, [frame(topic, 0)])] for _, topic, cid in subs], timeout=30)
        assert [(outcome.delivered, posts) for outcome, posts in results] == [(1, 1)] * 4
        for wire, _, _ in subs:
            assert received(wire, 1) == [0]


def test_a_gone_connection_is_reported_by_its_shard_and_the_others_are_delivered(stack, transport):
    ghost = new_id()
    with subscribers(stack, 2, "shards-gone") as subs:
        deliveries = [Delivery(ghost, [frame("realtime:nobody", 0)])] + [
            Delivery(cid, [frame(topic, 0), frame(topic, 1)]) for _, topic, cid in subs]
        shards = split(deliveries, 2)
        results = transport.post(shards, timeout=30)
        assert results[shard_of(ghost, 2)][0].gone == [ghost]
        assert sum(outcome.delivered for outcome, _ in results) == 4
        for wire, _, _ in subs:
            assert received(wire, 2) == [0, 1]


def test_a_shard_over_the_payload_limit_is_posted_in_pieces_each_connection_in_order(stack):
    split_transport = LambdaTransport(POSTER_FUNCTION, payload_limit=4096)
    ghost = new_id()
    try:
        with subscribers(stack, 3, "shards-pieces") as subs:
            pad = "x" * 400
            deliveries = [Delivery(cid, [frame(topic, n, pad) for n in range(20)]) for _, topic, cid in subs]
            before = stack.functions.invocations[POSTER_FUNCTION]
            (outcome, posts), = split_transport.post([deliveries], timeout=30)
            # Each connection owes ~10 KB: at least three pieces each, posted one after another.
            assert stack.functions.invocations[POSTER_FUNCTION] - before >= 9
            assert outcome.delivered == posts == 60
            for wire, _, _ in subs:
                assert received(wire, 20) == list(range(20))
            # A connection found gone in its first piece: its later pieces are not posted.
            before = stack.functions.invocations[POSTER_FUNCTION]
            (outcome, posts), = split_transport.post([[Delivery(ghost, [frame("realtime:nobody", n, pad)
                                                                          for n in range(20)])]], timeout=30)
            assert (outcome.gone, posts, stack.functions.invocations[POSTER_FUNCTION] - before) == ([ghost], 1, 1)
    finally:
        split_transport.close()


def test_frames_the_poster_cannot_get_through_come_back_owed_in_order(stack, transport):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    deliveries = [Delivery("conn-a", ["a0", "a1", "a2"]), Delivery("conn-b", ["b0"])]
    with poster_posting_to(nowhere):
        (outcome, posts), = transport.post([deliveries], timeout=30)
    assert outcome.delivered == 0
    assert sorted((d.connection_id, d.frames) for d in outcome.owed) == [("conn-a", ["a0", "a1", "a2"]),
                                                                         ("conn-b", ["b0"])]
    assert posts > 2  # each connection's first frame was tried, and retried


def test_a_poster_that_raises_fails_the_round_with_its_reason(stack, transport):
    with subscribers(stack, 1, "shards-control") as ((wire, topic, cid),):
        with poster_posting_to(None), pytest.raises(ShardFailed) as failed:
            transport.post([[Delivery(cid, [frame(topic, 0)])], []], timeout=30)
        reason = str(failed.value)
        assert "shard 0" in reason and "Unhandled" in reason, reason
        assert "RuntimeError: RIPPLE_CONNECTIONS_ENDPOINT is not set" in reason, reason
        assert "Traceback" not in reason and topic not in reason
        # Control: the same shard through a poster that is configured arrives.
        transport.post([[Delivery(cid, [frame(topic, 1)])]], timeout=30)
        assert received(wire, 1) == [1]


def test_an_unknown_function_fails_the_round(stack):
    missing = LambdaTransport("ripple-no-such-poster")
    try:
        with pytest.raises(ShardFailed, match="shard 0: invoking ripple-no-such-poster failed: "
                                              "ResourceNotFoundException"):
            missing.post([[Delivery("conn-a", ["a0"])]], timeout=30)
    finally:
        missing.close()


def test_a_poster_that_does_not_answer_in_time_fails_the_round(stack, transport):
    # A gateway that accepts connections and never answers: the poster waits on it.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(silent.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        with poster_posting_to(f"http://127.0.0.1:{silent.getsockname()[1]}"), \
                pytest.raises(ShardFailed, match=r"shard 1: no answer from ripple-poster within 1 s"):
            transport.post([[], [Delivery("conn-a", ["a0"])]], timeout=1)
    finally:
        stop.set()
        acceptor.join()
        # The poster's requests end now (connection reset, then refused): it answers owed frames.
        for conn in held:
            conn.close()
        silent.close()


def test_the_poster_answers_a_bad_event_with_a_clear_error():
    handler = load_handler("poster").handler
    secret_frame = '{"topic":"realtime:private","payload":"do-not-echo"}'
    for event, where in (({"deliveries": [["conn-a", [secret_frame, 7]]]}, "deliveries.0.1.1"),
                         ({"deliveries": [["", [secret_frame]]]}, "deliveries.0.0"),
                         ({"shard": [secret_frame]}, "deliveries"),
                         ([secret_frame], "event")):
        answer = handler(event, LambdaContext("poster", new_id()))
        assert set(answer) == {"error"}
        assert answer["error"]["type"] == "InvalidShard"
        assert answer["error"]["message"].startswith(where), answer
        assert "do-not-echo" not in json.dumps(answer)


def test_a_bad_event_through_invoke_is_answered_not_raised(stack):
    client = boto3.client("lambda", endpoint_url=stack.functions.url, region_name=REGION)
    response = client.invoke(FunctionName=f"arn:aws:lambda:{REGION}:000000000000:function:{POSTER_FUNCTION}",
                             Payload=json.dumps({"deliveries": "all of them"}).encode())
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read())["error"] == {
        "type": "InvalidShard", "message": "deliveries: Input should be a valid list"}


@contextlib.contextmanager
def function(stack, name: str, handler) -> Iterator[LambdaTransport]:
    """`handler` served as the function `name` for the test, and a transport invoking it."""
    stack.functions.functions[name] = handler
    sent = LambdaTransport(name)
    try:
        yield sent
    finally:
        sent.close()
        del stack.functions.functions[name]


def test_a_poster_that_refuses_its_event_fails_the_round_with_its_reason(stack):
    real = load_handler("poster").handler
    # A drainer and a poster of different releases: the poster refuses a field it does not know.
    def newer_drainer(event, context):
        return real({**event, "priority": "high"}, context)

    with function(stack, "ripple-poster-older", newer_drainer) as older:
        with pytest.raises(ShardFailed, match=r"^shard 0: ripple-poster-older refused the shard: "
                                              r"InvalidShard: priority: Extra inputs are not permitted$"):
            older.post([[Delivery("conn-a", ["a0"])]], timeout=30)


@pytest.mark.parametrize("answer", [{"delivered": "all", "gone": [], "failed": 0, "retries": 0, "posts": 1, "owed": []},
                                    {"delivered": 1}, ["delivered"], None])
def test_an_answer_that_is_not_an_outcome_fails_the_round_without_echoing_it(stack, answer):
    with function(stack, "ripple-poster-garbled", lambda event, context: answer) as garbled:
        with pytest.raises(ShardFailed, match=r"^shard 0: ripple-poster-garbled answered ") as failed:
            garbled.post([[Delivery("conn-a", ["a0"])]], timeout=30)
        assert "all" not in str(failed.value).split("keys:")[-1].replace("delivered", "")


class Throttling(http.server.BaseHTTPRequestHandler):
    """Lambda refusing every invocation as throttled (the function's concurrency is spent)."""

    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User",
                           "message": "Rate Exceeded."}).encode()
        self.send_response(429)
        self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_throttling_past_botocores_retries_fails_the_round(stack):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    throttled = LambdaTransport(POSTER_FUNCTION, invoke_client(f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        with pytest.raises(ShardFailed, match=r"^shard 0: invoking ripple-poster failed: "
                                              r"TooManyRequestsException: Rate Exceeded\.$"):
            throttled.post([[Delivery("conn-a", ["a0"])]], timeout=30)
        assert Throttling.requests == 3  # the first try and botocore's two retries
    finally:
        throttled.close()
        server.shutdown()
        server.server_close()
