"""Private channels authorize per extension: a member whose realtime.messages SELECT policies
allow only presence gets presence and no broadcasts, and the other way round."""
from __future__ import annotations

import pytest

from tests.e2e.test_authorization import drain, user_token
from tests.e2e.wire import Wire

POLICIES = """
drop policy if exists ext_read on realtime.messages;
drop policy if exists ext_track on realtime.messages;
create policy ext_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'ext-room'
         and ((auth.jwt() ->> 'reads') = 'both' or (auth.jwt() ->> 'reads') = extension));
create policy ext_track on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'ext-room' and extension = 'presence');
"""
TOPIC = "realtime:ext-room"


def member(stack, reads: str) -> Wire:
    wire = Wire(stack.ws_url, user_token(1, reads=reads))
    reply, _ = wire.join(TOPIC, [], private=True, presence={"enabled": True, "key": reads})
    assert reply["payload"]["status"] == "ok", reply
    return wire


def events(frames: list[dict]) -> list[str]:
    return [f["event"] for f in frames]


def test_each_member_receives_only_the_extensions_it_may_read(stack, db):
    db.execute(POLICIES)
    refused = Wire(stack.ws_url, user_token(1, reads="nothing"))
    both = member(stack, "both")
    broadcast_only = member(stack, "broadcast")
    presence_only = member(stack, "presence")
    try:
        reply, _ = refused.join(TOPIC, [], private=True)
        assert reply["payload"]["response"]["reason"].startswith("Unauthorized: You do not have permissions to read")
        # presence_state is sent to those who may read presence only.
        assert events(drain(both, 0.5)) == ["presence_state"]
        assert events(drain(presence_only, 0.3)) == ["presence_state"]
        assert drain(broadcast_only, 0.3) == []

        db.execute("select realtime.send('{\"n\": 1}'::jsonb, 'memo', 'ext-room', true)")
        assert both.recv()["payload"] == {"type": "broadcast", "event": "memo", "payload": {"n": 1}}
        assert broadcast_only.recv()["payload"]["payload"] == {"n": 1}

        ref = both.send(TOPIC, "presence", {"type": "presence", "event": "track", "payload": {"here": True}},
                        join_ref="j" + TOPIC)
        assert both.recv()["ref"] == ref
        diff = presence_only.recv()
        assert diff["event"] == "presence_diff" and list(diff["payload"]["joins"]) == ["both"]
        assert events(drain(both, 0.5)) == ["presence_diff"]  # the control saw its own diff
        # Both deliveries reached every member allowed them: nothing else is on its way.
        assert drain(presence_only, 0.3) == [] and drain(broadcast_only, 0.3) == []
    finally:
        for wire in (refused, both, broadcast_only, presence_only):
            wire.close()


@pytest.mark.parametrize("reads,sees", [("broadcast", {"broadcast"}), ("presence", {"presence"}),
                                        ("both", {"broadcast", "presence"})])
def test_a_refreshed_token_updates_what_the_member_receives(stack, db, reads, sees):
    db.execute(POLICIES)
    wire = Wire(stack.ws_url, user_token(1, reads="both"))
    control = member(stack, "both")
    try:
        wire.join(TOPIC, [], private=True)
        wire.send(TOPIC, "access_token", {"access_token": user_token(1, reads=reads)}, join_ref="j" + TOPIC)
        drain(control, 0.3)
        db.execute("select realtime.send('{\"n\": 2}'::jsonb, 'memo', 'ext-room', true)")
        ref = control.send(TOPIC, "presence", {"type": "presence", "event": "track", "payload": {}},
                           join_ref="j" + TOPIC)
        got = drain(control, 1.0)
        assert {"broadcast", "presence_diff"} <= set(events(got)) and ref in [f.get("ref") for f in got]
        received = {"broadcast" if f["event"] == "broadcast" else "presence" for f in drain(wire, 0.5)
                    if f["event"] in ("broadcast", "presence_diff")}
        assert received == sees
    finally:
        wire.close()
        control.close()
