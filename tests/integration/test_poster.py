"""The lean poster against botocore's signer and against a real HTTP endpoint that answers what
API Gateway answers: 200, 410, 429, 5xx, 400, 413, or nothing at all."""
from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials, RefreshableCredentials

from ripple.gateway import ConnectionsApi, Delivery, Gone, Refused, Unreachable, lean_poster
from ripple.http1 import InlineSockets
from ripple.poster import LeanPoster
from ripple.sigv4 import Signer

pytestmark = pytest.mark.timeout(60)

REGION = "eu-west-1"
CONNECTION_ID = "L0SM9cOFvHcCIhw="  # API Gateway's ids are base64: '=' must be encoded


def _botocore_headers(creds: Credentials, method: str, url: str, body: bytes, stamp: str) -> dict:
    """What botocore's SigV4Auth puts on the same request, signed at `stamp`."""
    request = AWSRequest(method=method, url=url, data=body)
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(creds, "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDP+session/token=="])
@pytest.mark.parametrize("endpoint", [
    "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
    "http://127.0.0.1:54321",
    "https://Example.com:8443/stage/",
])
@pytest.mark.parametrize("method,body", [("POST", b'{"event":"x","payload":{"n":"\xc3\xa9"}}'),
                                         ("POST", b""), ("DELETE", b"")])
def test_signature_is_byte_for_byte_botocores(token, endpoint, method, body) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    poster = LeanPoster(endpoint, Signer(creds, REGION, "execute-api"))
    now = 1767225600.5  # 2026-01-01T00:00:00Z
    ours = poster.signer.headers(method, poster._host, poster.path(CONNECTION_ID), body, now=now)
    url = poster._origin + poster.path(CONNECTION_ID)
    theirs = _botocore_headers(creds, method, url, body, ours["X-Amz-Date"])
    assert ours["X-Amz-Date"] == "20260101T000000Z"
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert set(theirs) == set(ours)
    assert ours["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/{REGION}/execute-api/aws4_request, ")


def test_the_url_and_signature_are_what_boto3_sends_for_post_to_connection() -> None:
    """boto3's own PostToConnection request, caught before it leaves, carries the path and the
    signature the lean poster computes (boto3 signs more headers: compare over the same set)."""
    endpoint = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    creds = Credentials("AKIDEXAMPLE", "secret", "token")
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                          aws_session_token=creds.token)
    sent: list[AWSRequest] = []

    class Raw:
        def stream(self):
            yield b""

    def catch(request, **_):
        sent.append(request)
        return AWSResponse(request.url, 200, {}, Raw())

    client.meta.events.register("before-send.apigatewaymanagementapi.PostToConnection", catch)
    client.post_to_connection(ConnectionId=CONNECTION_ID, Data=b"hello")
    request = sent[0]
    poster = LeanPoster(endpoint, Signer(creds, REGION, "execute-api"))
    assert request.url == poster._origin + poster.path(CONNECTION_ID)
    # Re-sign boto3's request with only our headers: the same bytes as ours.
    stamp = request.headers["X-Amz-Date"]
    stamp = stamp.decode() if isinstance(stamp, bytes) else stamp
    now = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC).timestamp()
    ours = poster.signer.headers("POST", poster._host, poster.path(CONNECTION_ID), request.body, now=now)
    assert ours == {k: v for k, v in _botocore_headers(creds, "POST", request.url, request.body,
                                                       stamp).items() if k in ours}


def test_rotated_credentials_sign_with_the_new_key() -> None:
    """The cached signing key follows refreshed credentials, as botocore's provider hands them out."""
    generation = iter(range(1, 100))

    def refresh() -> dict:
        n = next(generation)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {"access_key": f"AKID{n}", "secret_key": f"secret{n}", "token": f"token{n}",
                "expiry_time": expiry.isoformat()}

    creds = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    signer = Signer(creds, REGION, "execute-api")
    now = time.time()
    first = signer.headers("POST", "h", "/@connections/a", b"x", now=now)
    creds._expiry_time = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    second = signer.headers("POST", "h", "/@connections/a", b"x", now=now)
    assert first["X-Amz-Security-Token"] == "token1" and second["X-Amz-Security-Token"] == "token2"
    frozen = creds.get_frozen_credentials()
    expected = _botocore_headers(Credentials(frozen.access_key, frozen.secret_key, frozen.token),
                                 "POST", "http://h/@connections/a", b"x", second["X-Amz-Date"])
    assert second["Authorization"] == expected["Authorization"] != first["Authorization"]


# -- a real endpoint ---------------------------------------------------------------------------

class Endpoint:
    """An HTTP server shaped like `@connections`: it checks every request's signature with
    botocore (403 if wrong), answers each connection's scripted statuses in turn, then 200, and
    records the bodies it accepted per connection."""

    def __init__(self, creds: Credentials, tls: ssl.SSLContext | None = None):
        self.creds = creds
        self.tls = tls
        self.script: dict[str, list[int]] = defaultdict(list)
        self.accepted: dict[str, list[str]] = defaultdict(list)
        self.requests: dict[str, int] = defaultdict(int)
        self.deleted: list[str] = []
        self.transports: set[int] = set()  # the client connections requests came on
        self.bad_signatures = 0
        self.in_flight = self.most_in_flight = 0
        self.delay = 0.0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> Endpoint:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/prod/@connections/{connection_id}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://localhost:{self.runner.addresses[0][1]}/prod"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def _signed_correctly(self, request: web.Request, body: bytes) -> bool:
        signed = {"host": request.host, "X-Amz-Date": request.headers.get("X-Amz-Date", "")}
        if "X-Amz-Security-Token" in request.headers:
            signed["X-Amz-Security-Token"] = request.headers["X-Amz-Security-Token"]
        copy = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}",
                          data=body, headers=signed)
        copy.context["timestamp"] = signed["X-Amz-Date"]
        auth = SigV4Auth(self.creds, "execute-api", REGION)
        expected = auth.signature(auth.string_to_sign(copy, auth.canonical_request(copy)), copy)
        return request.headers.get("Authorization", "").endswith(f"Signature={expected}")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        connection_id = request.match_info["connection_id"]
        if not self._signed_correctly(request, body):
            self.bad_signatures += 1
            return web.json_response({"message": "bad signature"}, status=403,
                                     headers={"x-amzn-ErrorType": "ForbiddenException"})
        self.requests[connection_id] += 1
        self.transports.add(id(request.transport))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.script[connection_id].pop(0) if self.script[connection_id] else 200
        finally:
            self.in_flight -= 1
        if request.method == "DELETE":
            if status == 200:
                self.deleted.append(connection_id)
                return web.Response(status=204)
        if status == 200:
            self.accepted[connection_id].append(body.decode())
            return web.Response(status=200)
        error = {410: "GoneException", 429: "LimitExceededException", 413: "PayloadTooLargeException",
                 400: "BadRequestException", 500: "InternalServerErrorException"}.get(status, "Error")
        return web.json_response({"message": error}, status=status,
                                 headers={"x-amzn-ErrorType": f"{error}:http://internal.amazon.com/"})


CREDS = Credentials("AKIDLOCAL", "local-secret", "local-session-token")


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint(CREDS).start()
    yield server
    server.stop()


# Every round through the event loop, or every round from the calling thread first (what the
# drain does for small rounds): the same answers must mean the same outcome either way.
WAYS = {"loop": 0, "inline": 1000}


@pytest.fixture(params=list(WAYS))
def inline_max(request) -> int:
    return WAYS[request.param]


@pytest.fixture
def api(endpoint: Endpoint, inline_max: int) -> ConnectionsApi:
    poster = LeanPoster(endpoint.url, Signer(CREDS, REGION, "execute-api"), limit=64)
    return ConnectionsApi(poster, concurrency=64, base_backoff=0.001, max_backoff=0.005,
                          inline_max=inline_max)


def frames(connection_id: str, count: int) -> list[str]:
    return [json.dumps({"to": connection_id, "seq": i}) for i in range(count)]


def test_every_connection_gets_its_frames_in_order(endpoint: Endpoint, api: ConnectionsApi) -> None:
    endpoint.delay = 0.002  # enough to have many posts in flight at once
    deliveries = [Delivery(f"conn-{c}=", frames(f"conn-{c}=", 5)) for c in range(200)]
    outcome = api.deliver(deliveries)
    assert (outcome.delivered, outcome.failed, outcome.gone, outcome.owed) == (1000, 0, [], [])
    assert endpoint.bad_signatures == 0
    for delivery in deliveries:
        assert endpoint.accepted[delivery.connection_id] == delivery.frames
    assert api.posts == 1000
    assert 1 < endpoint.most_in_flight <= 64


def test_throttled_then_accepted_is_delivered_after_a_retry(endpoint: Endpoint, api: ConnectionsApi) -> None:
    endpoint.script["a"] = [429]
    outcome = api.deliver([Delivery("a", frames("a", 3)), Delivery("b", frames("b", 1))])
    assert (outcome.delivered, outcome.retries, outcome.owed, outcome.failed) == (4, 1, [], 0)
    assert endpoint.accepted["a"] == frames("a", 3)
    assert api.posts == 5


def test_a_server_error_every_time_leaves_the_rest_owed_in_order(endpoint: Endpoint,
                                                                  api: ConnectionsApi) -> None:
    endpoint.script["a"] = [200, 500, 500, 500, 500, 500]
    outcome = api.deliver([Delivery("a", frames("a", 4)), Delivery("b", frames("b", 2))])
    assert outcome.owed == [Delivery("a", frames("a", 4)[1:])]
    assert (outcome.delivered, outcome.failed) == (3, 0)
    assert endpoint.accepted["a"] == frames("a", 1)
    assert endpoint.accepted["b"] == frames("b", 2)  # other connections are unaffected
    assert endpoint.requests["a"] == 6  # one delivered, then five tries of the second frame


def test_a_frame_refused_for_good_fails_alone(endpoint: Endpoint, api: ConnectionsApi) -> None:
    endpoint.script["a"] = [200, 413]
    endpoint.script["b"] = [400]
    outcome = api.deliver([Delivery("a", frames("a", 4)), Delivery("b", frames("b", 2))])
    assert (outcome.delivered, outcome.failed, outcome.owed, outcome.retries) == (4, 2, [], 0)
    assert endpoint.accepted["a"] == [frames("a", 4)[i] for i in (0, 2, 3)]
    assert endpoint.accepted["b"] == frames("b", 2)[1:]


def test_gone_stops_that_connection_only(endpoint: Endpoint, api: ConnectionsApi) -> None:
    endpoint.script["a"] = [200, 410]
    outcome = api.deliver([Delivery("a", frames("a", 4)), Delivery("b", frames("b", 2))])
    assert (outcome.gone, outcome.delivered, outcome.owed) == (["a"], 3, [])
    assert endpoint.requests["a"] == 2  # nothing more is posted to a gone connection
    assert endpoint.accepted["b"] == frames("b", 2)


def test_post_send_and_close_answer_as_before(endpoint: Endpoint, api: ConnectionsApi) -> None:
    endpoint.script["g"] = [410, 410]
    with pytest.raises(Gone):
        api.post("g", "x")
    endpoint.script["r"] = [413]
    with pytest.raises(Refused):
        api.post("r", "x")
    endpoint.script["u"] = [503]
    with pytest.raises(Unreachable):
        api.post("u", "x")
    endpoint.script["s"] = [500] * 5
    assert api.send("s", "lost") is False
    assert api.send("t", "kept") is True and endpoint.accepted["t"] == ["kept"]
    api.close("g")  # gone is not an error
    api.close("c")
    assert endpoint.deleted == ["c"]
    assert endpoint.bad_signatures == 0


def test_no_answer_at_all_is_unreachable_and_owed(endpoint: Endpoint, inline_max: int) -> None:
    url = endpoint.url
    endpoint.stop()  # the port now refuses connections
    poster = LeanPoster(url, Signer(CREDS, REGION, "execute-api"))
    api = ConnectionsApi(poster, base_backoff=0.001, max_backoff=0.002, inline_max=inline_max)
    outcome = api.deliver([Delivery("a", frames("a", 2))])
    assert outcome.owed == [Delivery("a", frames("a", 2))]
    assert (outcome.delivered, api.posts) == (0, 5)
    endpoint.runner = None
    endpoint.stop = lambda: None  # type: ignore[method-assign]


def test_the_default_poster_signs_with_the_provider_chain(endpoint: Endpoint, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", CREDS.token)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    api = ConnectionsApi(lean_poster(endpoint.url))
    assert api.deliver([Delivery("a", ["one", "two"])]).delivered == 2
    assert endpoint.bad_signatures == 0 and endpoint.accepted["a"] == ["one", "two"]


def test_the_inline_round_keeps_its_sockets_and_retries_through_the_loop(endpoint: Endpoint) -> None:
    """A small round goes out from the calling thread on sockets it keeps for the next round; a
    frame throttled there is retried through the loop, still ahead of that connection's later
    frames, with the first try counted."""
    poster = LeanPoster(endpoint.url, Signer(CREDS, REGION, "execute-api"))
    api = ConnectionsApi(poster, base_backoff=0.001, max_backoff=0.002, inline_max=8)
    assert api.deliver([Delivery(c, frames(c, 2)) for c in "ab"]).delivered == 4
    kept = list(poster._inline._kept())
    assert len(kept) == 2
    endpoint.script["a"] = [429, 429]
    outcome = api.deliver([Delivery("a", frames("a", 3)[1:]), Delivery("b", ["last"])])
    assert (outcome.delivered, outcome.retries, outcome.owed) == (3, 2, [])
    assert endpoint.accepted["a"] == frames("a", 2) + frames("a", 3)[1:]
    assert endpoint.requests["a"] == 2 + 2 + 2
    assert any(sock in [k for k, _ in poster._inline._kept()] for sock, _ in kept)
    assert poster._pool is not None  # the retries went through the loop's pool
    assert endpoint.bad_signatures == 0


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[tuple[ssl.SSLContext, str]]:
    """A server context for `localhost` and the CA that signed it, as a PEM file."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    yield server, str(pem)


def test_both_ways_post_over_tls_and_refuse_an_untrusted_server(tls, inline_max: int, monkeypatch) -> None:
    """API Gateway is HTTPS: the frames go out over TLS with the certificate verified, either way;
    a server whose certificate the system does not trust gets nothing (owed, not sent)."""
    server_context, ca_file = tls
    endpoint = Endpoint(CREDS, tls=server_context).start()
    try:
        untrusted = ConnectionsApi(LeanPoster(endpoint.url, Signer(CREDS, REGION, "execute-api")),
                                   attempts=1, inline_max=inline_max)
        assert untrusted.deliver([Delivery("a", ["x"])]).owed == [Delivery("a", ["x"])]
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # what create_default_context trusts
        poster = LeanPoster(endpoint.url, Signer(CREDS, REGION, "execute-api"))
        api = ConnectionsApi(poster, inline_max=inline_max)
        for round_ in range(2):
            outcome = api.deliver([Delivery(c, [f"{c}{round_}-1", f"{c}{round_}-2"]) for c in "abc"])
            assert (outcome.delivered, outcome.owed, outcome.failed) == (6, [], 0)
            time.sleep(0.05)  # idle between rounds: what TLS sends then must not cost a socket
        assert endpoint.accepted["a"] == ["a0-1", "a0-2", "a1-1", "a1-2"]
        assert endpoint.bad_signatures == 0
        assert bool(poster._inline._kept()) == bool(inline_max)
        assert len(endpoint.transports) == 3  # one kept connection per connection posted to
    finally:
        endpoint.stop()


# -- the keep-alive pool against raw HTTP/1.1 answers ----------------------------------------

class RawServer:
    """A TCP server that answers each request with the next scripted bytes (or closes the
    connection when the script says None; after an HTTP/1.0 or `Connection: close` answer too),
    and counts the connections it accepted."""

    def __init__(self, answers: list[bytes | None], close_idle: bool = False):
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []
        # Close each connection right after its first answer, without a word: as a server
        # ending an idle keep-alive connection does.
        self.close_idle = close_idle

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if answer.startswith(b"HTTP/1.0") or b"Connection: close" in answer or self.close_idle:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


REQUEST = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"


def _inline_exchange(answers: list[bytes | None], requests: int, close_idle: bool = False
                     ) -> tuple[list[tuple[int, str, bytes]], RawServer]:
    """The requests one at a time through InlineSockets, the server on a thread of its own."""
    server = RawServer(answers, close_idle=close_idle)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listening = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(server._serve, "127.0.0.1", 0), loop).result(timeout=5)
    port = listening.sockets[0].getsockname()[1]
    sockets = InlineSockets("http", "127.0.0.1", port, timeout=2)
    results = []
    for _ in range(requests):
        results.extend(sockets.exchange_all([REQUEST]))
        time.sleep(0.05)  # idle between rounds, as the drain is between wake-ups
    sockets.close()
    loop.call_soon_threadsafe(listening.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    return results, server


def _exchange(answers: list[bytes | None], requests: int
              ) -> tuple[list[tuple[int, str, bytes]], RawServer]:
    from ripple.poster import KeepAlivePool

    server = RawServer(answers)

    async def run() -> list[tuple[int, str, bytes]]:
        listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        pool = KeepAlivePool("http", "127.0.0.1", port, limit=1, timeout=2)
        results: list[tuple[int, str, bytes]] = []
        for _ in range(requests):
            try:
                results.append(await pool.request(REQUEST))
            except Exception as exc:  # noqa: BLE001 - the test looks at which
                results.append((0, type(exc).__name__, b""))
        pool.close()
        listening.close()
        return results

    return asyncio.run(run()), server


# Every shape of body an answer may have, on one kept connection.
BODY_SHAPES: list[bytes | None] = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException:http://internal.amazon.com/\r\n"
    b"Content-Length: 17\r\n\r\n{\"message\": null}",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n"
    b"x-amzn-ErrorType: LimitExceededException\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
]
# Each of these ends its connection: the next request needs a new one.
CLOSINGS: list[bytes | None] = [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nbody to the end",  # no length: read to the close
    None,  # closed without an answer
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]
EXCHANGES = {"pool": lambda answers, requests: _exchange(answers, requests),
             "inline": lambda answers, requests: _inline_exchange(answers, requests)}


@pytest.mark.parametrize("way", list(EXCHANGES))
def test_a_connection_is_reused_and_every_body_shape_read(way: str) -> None:
    results, server = EXCHANGES[way](list(BODY_SHAPES), 4)
    assert results == [(200, "", b""), (410, "GoneException", b'{"message": null}'),
                       (429, "LimitExceededException", b"abc"), (204, "", b"")]
    assert server.connections == 1 and len(server.requests) == 4


@pytest.mark.parametrize("way", list(EXCHANGES))
def test_a_new_connection_follows_a_close_and_garbage_fails(way: str) -> None:
    results, server = EXCHANGES[way](list(CLOSINGS), 5)
    assert results == [(200, "", b""), (200, "", b"body to the end"), (0, "ConnectionResetError", b""),
                       (0, "BadResponse", b""), (200, "", b"")]
    assert server.connections == 5


def test_inline_sockets_do_not_reuse_a_connection_the_server_closed_while_idle() -> None:
    """A kept socket the server ended between rounds is left, not written to: the next round
    opens a new one and gets its answer instead of a reset."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    results, server = _inline_exchange([ok, ok, ok], 3, close_idle=True)
    assert results == [(200, "", b"")] * 3
    assert server.connections == 3


def test_inline_sockets_time_out_a_server_that_never_answers() -> None:
    """No answer within the timeout: status 0, TimeoutError, and the socket is not kept."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        sockets = InlineSockets("http", "127.0.0.1", listener.getsockname()[1], timeout=0.2)
        started = time.monotonic()
        assert sockets.exchange_all([REQUEST, REQUEST]) == [(0, "TimeoutError", b"")] * 2
        assert time.monotonic() - started < 2
        assert sockets._kept() == []
    finally:
        listener.close()
