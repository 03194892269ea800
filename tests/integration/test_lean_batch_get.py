"""The lean BatchGetItem (the per-batch version read) against botocore's signer and a real
DynamoDB API (moto's server): the same signature, the same answer, and boto3 when it fails."""
from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ripple import codec
from ripple.local.aws import MotoServer
from ripple.local.stack import BINDINGS_TABLE, CONNECTIONS_TABLE, REGION, create_tables
from ripple.sigv4 import Signer
from ripple.store import DynamoDBStore
from ripple.store.lean import CONTENT_TYPE, TARGET, LeanBatchGet
from ripple.store.warm import VERSION_SK

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDP+session/token=="])
def test_the_signature_is_botocores_for_the_same_headers(token) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = codec.dumps({"RequestItems": {"t": {"Keys": [{"pk": {"S": "é"}}]}}}).encode()
    signed = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
    ours = Signer(creds, REGION, "dynamodb").headers("POST", "dynamodb.eu-west-1.amazonaws.com", "/", body,
                                                     now=1767225600.0, signed=signed)
    request = AWSRequest(method="POST", url="https://dynamodb.eu-west-1.amazonaws.com/", data=body,
                         headers=signed)
    with mock.patch("botocore.auth.get_current_datetime", return_value=datetime.datetime(2026, 1, 1)):
        SigV4Auth(creds, "dynamodb", REGION).add_auth(request)
    theirs = dict(request.headers.items())
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert "SignedHeaders=content-type;host;x-amz-date;" in ours["Authorization"]


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "local")
        env.setenv("AWS_SECRET_ACCESS_KEY", "local")
        server = MotoServer()
        server.start()
        create_tables(server.url)
        yield server.url
        server.stop()


@pytest.fixture
def client(moto: str):
    return boto3.client("dynamodb", endpoint_url=moto, region_name=REGION)


def test_the_answer_is_boto3s(client) -> None:
    for bucket, version in (("public.a", "v1"), ("public.b", "v2")):
        client.put_item(TableName=BINDINGS_TABLE,
                        Item={"pk": {"S": bucket}, "sk": {"S": VERSION_SK}, "v": {"S": version}})
    keys = [{"pk": {"S": b}, "sk": {"S": VERSION_SK}} for b in ("public.a", "public.b", "public.none")]
    request = {BINDINGS_TABLE: {"Keys": keys, "ProjectionExpression": "pk, v", "ConsistentRead": True}}
    reader = LeanBatchGet.for_client(client)
    assert reader is not None
    ours = reader.batch_get_item(request)
    theirs = client.batch_get_item(RequestItems=request)

    def items(answer: dict) -> list:
        return sorted(answer["Responses"][BINDINGS_TABLE], key=lambda item: item["pk"]["S"])

    assert items(ours) == items(theirs) == [{"pk": {"S": "public.a"}, "v": {"S": "v1"}},
                                            {"pk": {"S": "public.b"}, "v": {"S": "v2"}}]
    assert not ours.get("UnprocessedKeys")


def test_the_store_reads_versions_lean_and_falls_back_to_boto3(client) -> None:
    client.put_item(TableName=BINDINGS_TABLE,
                    Item={"pk": {"S": "public.c"}, "sk": {"S": VERSION_SK}, "v": {"S": "v3"}})
    store = DynamoDBStore(client, CONNECTIONS_TABLE, BINDINGS_TABLE, lean=LeanBatchGet.for_client(client))
    sent: list[str] = []
    client.meta.events.register("before-send.dynamodb.BatchGetItem", lambda **_: sent.append("boto3"))
    assert store._versions(["public.c", "public.none"]) == {"public.c": "v3", "public.none": ""}
    assert sent == [] and store.calls == 1
    # An endpoint that refuses: the same read through boto3.
    store.lean = LeanBatchGet("http://127.0.0.1:9", Signer(client._request_signer._credentials, REGION, "dynamodb"))
    assert store._versions(["public.c"]) == {"public.c": "v3"}
    assert sent == ["boto3"] and store.calls == 2


def test_a_test_double_gets_no_lean_reader() -> None:
    assert LeanBatchGet.for_client(object()) is None


def test_the_read_keeps_its_connection_and_opens_it_again_once_the_server_closed_it(client) -> None:
    """Batch after batch the read goes out on one kept connection; when the server has closed it
    while it was idle, the read goes out once more on a new one and is answered."""
    answer = b'{"Responses": {"t": []}, "UnprocessedKeys": {}}'
    accepted: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def answer_one(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                     b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer)

    def serve() -> None:
        # The first connection answers two requests, the second one; each is then closed by the
        # server without saying so (no Connection: close): the client learns on its next request.
        for requests in (2, 1):
            conn, _ = listener.accept()
            accepted.append(requests)
            with conn:
                conn.settimeout(5)
                for _ in range(requests):
                    answer_one(conn)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    reader = LeanBatchGet(f"http://127.0.0.1:{port}", Signer(client._request_signer._credentials, REGION, "dynamodb"))
    request = {"t": {"Keys": [{"pk": {"S": "a"}, "sk": {"S": VERSION_SK}}]}}
    assert reader.batch_get_item(request) == codec.loads(answer)
    assert reader.batch_get_item(request) == codec.loads(answer)
    assert len(accepted) == 1  # the second read went out on the first one's connection
    time.sleep(0.1)  # the server has closed it
    assert reader.batch_get_item(request) == codec.loads(answer)
    server.join(timeout=5)
    listener.close()
    assert len(accepted) == 2


def test_the_local_stacks_moto_keeps_the_connection_as_aws_does(client) -> None:
    """The local DynamoDB answers on a kept-alive connection, as the real one does: read after
    read goes out on the socket the first one opened (an answer with `Connection: close`
    would make the reader open a new one for each)."""
    reader = LeanBatchGet.for_client(client)
    assert reader is not None
    request = {BINDINGS_TABLE: {"Keys": [{"pk": {"S": "public.kept"}, "sk": {"S": VERSION_SK}}],
                                "ConsistentRead": True}}
    reader.batch_get_item(request)
    [(first, _)] = reader._sockets._kept()
    for _ in range(3):
        assert reader.batch_get_item(request)["Responses"] == {BINDINGS_TABLE: []}
        assert [sock for sock, _ in reader._sockets._kept()] == [first]
    # boto3's own calls too: one connection for call after call.
    http = client._endpoint.http_session._manager.connection_from_url(client.meta.endpoint_url)
    for _ in range(3):
        client.describe_table(TableName=BINDINGS_TABLE)
    assert http.num_connections == 1
