import pytest

from ripple.protocol.message import Message, error, ok, system
from ripple.protocol.serializer import V1, V2, FrameError, decode, encode, negotiate


def test_v1_round_trip():
    msg = decode('{"topic":"realtime:a","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}', V1)
    assert msg == Message("realtime:a", "phx_join", {"config": {}}, "1", "1")
    assert encode(ok(msg), V1) == ('{"topic":"realtime:a","event":"phx_reply",'
                                   '"payload":{"status":"ok","response":{}},"ref":"1"}')


def test_v2_round_trip():
    msg = decode('["3","4","realtime:a","heartbeat",{}]', V2)
    assert msg == Message("realtime:a", "heartbeat", {}, "4", "3")
    assert encode(ok(msg), V2) == '["3","4","realtime:a","phx_reply",{"status":"ok","response":{}}]'


def test_integer_refs_become_strings():
    assert decode('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}', V1).ref == "7"


@pytest.mark.parametrize("text,vsn", [
    ("", V1), ("{", V1), ("[]", V2), ('["1","2","t","e"]', V2), ("[1,2,3,4,5]", V2),
    ('{"event":"x","payload":{}}', V1), ('{"topic":"","event":"x"}', V1), ('{"topic":"t","event":5}', V1),
    ('{"topic":"t","event":"e","ref":{"a":1}}', V1), ("42", V1), ('"s"', V1), ("null", V1),
    ('["1","2","t","e",{}]', V1), ('{"topic":"t","event":"e"}', V2),
])
def test_malformed_frames_raise_frame_error(text, vsn):
    with pytest.raises(FrameError):
        decode(text, vsn)


def test_error_and_system_shapes():
    msg = Message("realtime:room", "phx_join", {}, "2", "2")
    assert error(msg, "Unauthorized: nope").payload == {"status": "error", "response": {"reason": "Unauthorized: nope"}}
    assert system("realtime:room", "postgres_changes", "ok", "Subscribed to PostgreSQL").payload == {
        "channel": "room", "extension": "postgres_changes", "message": "Subscribed to PostgreSQL", "status": "ok"}


def test_negotiate():
    assert negotiate(None) == V1 and negotiate("") == V1 and negotiate("2.0.0") == V2
    with pytest.raises(FrameError):
        negotiate("3.0.0")
