"""What a post's failure costs: a 410 ends the connection's frames, another 4xx only that frame,
throttling and server errors are retried and then owed in order."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from ripple.gateway import ConnectionsApi, Delivery
from tests.unit.conftest import RecordingClient


def error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PostToConnection")


class FaultyClient(RecordingClient):
    """Raises the queued faults for one connection, one per post, then posts normally."""

    def __init__(self, faults: dict[str, list[Exception]]):
        super().__init__()
        self.faults = faults
        self.attempts: dict[str, int] = {}

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803
        self.attempts[ConnectionId] = self.attempts.get(ConnectionId, 0) + 1
        queued = self.faults.get(ConnectionId)
        if queued:
            raise queued.pop(0)
        super().post_to_connection(ConnectionId=ConnectionId, Data=Data)


def api_for(client, **kw) -> ConnectionsApi:
    return ConnectionsApi(client, concurrency=4, base_backoff=0.001, max_backoff=0.002, **kw)


def frames(*ns: int) -> list[str]:
    return [json.dumps({"n": n}) for n in ns]


def test_throttling_is_retried_and_then_delivered_in_order():
    client = FaultyClient({"a": [error(429, "LimitExceededException"), error(500, "InternalServerErrorException")]})
    outcome = api_for(client).deliver([Delivery("a", frames(1, 2, 3)), Delivery("b", frames(9))])
    assert [f["n"] for f in client.take("a")] == [1, 2, 3]
    assert [f["n"] for f in client.take("b")] == [9]
    assert (outcome.delivered, outcome.retries, outcome.owed, outcome.failed) == (4, 2, [], 0)


@pytest.mark.parametrize("fault", [error(500, "InternalServerErrorException"), error(429, "LimitExceededException"),
                                   error(503, "ServiceUnavailable"), EndpointConnectionError(endpoint_url="x")])
def test_a_connection_that_stays_unreachable_owes_its_frames_in_order(fault):
    client = FaultyClient({"a": [fault] * 5})
    api = api_for(client, keep_owed=True)
    outcome = api.deliver([Delivery("a", frames(1, 2, 3)), Delivery("b", frames(9))])
    assert client.take("a") == [] and [f["n"] for f in client.take("b")] == [9]
    assert outcome.owed == [Delivery("a", frames(1, 2, 3))]
    # Until its frames are taken, newer frames for it queue behind them instead of overtaking.
    api.deliver([Delivery("a", frames(4))])
    assert client.take("a") == []
    assert api.take_owing() == {"a": frames(1, 2, 3, 4)}
    api.deliver([Delivery("a", frames(5))])
    assert [f["n"] for f in client.take("a")] == [5]


def test_a_frame_refused_for_good_fails_alone():
    client = FaultyClient({"a": [error(413, "PayloadTooLargeException")]})
    outcome = api_for(client).deliver([Delivery("a", frames(1, 2, 3))])
    assert [f["n"] for f in client.take("a")] == [2, 3]
    assert (outcome.delivered, outcome.failed, outcome.owed) == (2, 1, [])
    assert client.attempts["a"] == 3  # a 413 is not retried


def test_a_gone_connection_stops_its_frames_only():
    client = RecordingClient(gone={"a"})
    outcome = api_for(client).deliver([Delivery("a", frames(1, 2)), Delivery("b", frames(3))])
    assert outcome.gone == ["a"] and outcome.delivered == 1


def test_without_keep_owed_nothing_is_held_back():
    client = FaultyClient({"a": [error(500, "InternalServerErrorException")] * 5})
    api = api_for(client)
    assert api.deliver([Delivery("a", frames(1))]).owed == [Delivery("a", frames(1))]
    api.deliver([Delivery("a", frames(2))])
    assert [f["n"] for f in client.take("a")] == [2]
    assert api.take_owing() == {}
