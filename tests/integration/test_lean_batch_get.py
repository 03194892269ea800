"""The lean BatchGetItem (the per-batch version read) against botocore's signer and a real
DynamoDB API (moto's server): the same signature, the same answer, and boto3 when it fails."""
from __future__ import annotations

import datetime
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
