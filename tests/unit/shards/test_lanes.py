"""How a shard becomes invocations: within the payload limit, each connection in one lane, a
connection owed more than the limit in consecutive pieces."""
from __future__ import annotations

from ripple.codec import dumps
from ripple.gateway import Delivery
from ripple.shards.invoke import lanes
from ripple.shards.wire import shard_payload


def size(deliveries: list[Delivery]) -> int:
    return len(dumps(shard_payload(deliveries)).encode())


def test_a_shard_within_the_limit_is_one_invocation():
    shard = [Delivery("a", ["1", "2"]), Delivery("b", ["3"])]
    assert lanes(shard, limit=10_000) == [[shard]]


def test_a_larger_shard_is_cut_between_connections_each_payload_within_the_limit():
    shard = [Delivery(f"c{i}", [f'{{"n":{n},"pad":"{"é" * 40}"}}' for n in range(5)]) for i in range(30)]
    out = lanes(shard, limit=2_000)
    assert len(out) > 1 and all(len(lane) == 1 for lane in out)
    assert [d for lane in out for d in lane[0]] == shard  # every connection once, in the shard's order
    assert all(size(lane[0]) <= 2_000 for lane in out)


def test_a_connection_owed_more_than_the_limit_is_one_lane_of_pieces_in_order():
    big = Delivery("big", [f'"frame {n} {"x" * 100}"' for n in range(40)])
    small = Delivery("small", ["s"])
    out = lanes([small, big], limit=1_000)
    pieces = next(lane for lane in out if lane[0][0].connection_id == "big")
    assert len(pieces) > 1 and all(len(payload) == 1 for payload in pieces)
    assert [f for payload in pieces for f in payload[0].frames] == big.frames
    assert all(size(payload) <= 1_000 for payload in pieces)
    assert [[small]] in out
