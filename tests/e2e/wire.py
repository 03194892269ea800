"""A raw Phoenix-protocol client over a real WebSocket, for asserting exact frames and errors.

Silence needs a control. "Nothing arrived" proves something only if the change or message went
out and reached someone who was owed it. So before a test checks that its subject received
nothing, a *control* (a subscriber with the same kind of binding minus whatever should exclude
the subject: another tenant's token, no filter, a live channel) must receive the very same change
or message. Where the subject is a raw socket, `before_marker` then shows that nothing reached it
ahead of a marker sent after the write, and the test's own timeout check comes last:

    control.join("realtime:docs", [DOCS])          # same binding, a token that may read the row
    db.execute("insert into docs ...")
    assert control.recv()["payload"]["data"]["record"]["title"] == "x"
    assert before_marker(subject, db) == []
    assert drain(subject) == []
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect


class Wire:
    """One socket speaking V1 (objects) or V2 (arrays) frames; `recv()` returns V1-shaped dicts."""

    def __init__(self, ws_url: str, key: str | None, vsn: str = "1.0.0"):
        query = [f"vsn={vsn}"] + ([f"apikey={key}"] if key else [])
        self.vsn = vsn
        self.ws: ClientConnection = connect(f"{ws_url}?{'&'.join(query)}", open_timeout=10)
        self.ref = 0

    def send(self, topic: str, event: str, payload: Any, join_ref: str | None = None) -> str:
        self.ref += 1
        ref = str(self.ref)
        if self.vsn == "2.0.0":
            self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref,
                                     "join_ref": join_ref}))
        return ref

    def recv(self, timeout: float = 10.0) -> dict:
        raw = json.loads(self.ws.recv(timeout=timeout))
        if isinstance(raw, list):
            join_ref, ref, topic, event, payload = raw
            return {"join_ref": join_ref, "ref": ref, "topic": topic, "event": event, "payload": payload}
        return raw

    def join(self, topic: str, bindings: list[dict], **config: Any) -> tuple[dict, dict | None]:
        """Join and return (reply, system message or None when there are no bindings)."""
        ref = self.send(topic, "phx_join", {"config": {"postgres_changes": bindings, **config}}, join_ref="j" + topic)
        reply = self.recv()
        assert reply["event"] == "phx_reply" and reply["ref"] == ref, reply
        system = self.recv() if bindings and reply["payload"]["status"] == "ok" else None
        return reply, system

    def close(self) -> None:
        self.ws.close()


def frames_until(wire: Wire, last: Callable[[dict], bool], timeout: float = 10.0) -> list[dict]:
    """The frames `wire` receives before the first one `last` accepts (read, not returned)."""
    deadline = time.monotonic() + timeout
    frames = []
    while not last(frame := wire.recv(timeout=max(0.1, deadline - time.monotonic()))):
        frames.append(frame)
    return frames


def heartbeat(wire: Wire) -> list[dict]:
    """The frames `wire` receives before the reply to a heartbeat sent now. The gateway hands one
    connection's frames to the router in order, so everything the router did for this socket's
    earlier frames (a broadcast relayed, or not) is done when the reply arrives."""
    ref = wire.send("phoenix", "heartbeat", {})
    return frames_until(wire, lambda frame: frame["ref"] == ref and frame["topic"] == "phoenix")


def before_marker(wire: Wire, db: Any) -> list[dict]:
    """The frames `wire` receives for everything written before this call. Joins a room of its
    own, sends a marker there through the outbox (`realtime.send`) and reads up to it: the
    fanout drains the outbox in commit order and posts one connection's frames in order, so a
    frame owed for an earlier write would arrive first."""
    topic = f"marker-{uuid.uuid4().hex[:12]}"
    ref = wire.send(f"realtime:{topic}", "phx_join", {"config": {}}, join_ref="j" + topic)
    frames = frames_until(wire, lambda frame: frame["ref"] == ref)
    db.execute("select realtime.send('{}'::jsonb, 'marker', %s, false)", (topic,))
    return frames + frames_until(wire, lambda frame: frame["topic"] == f"realtime:{topic}"
                                 and frame["event"] == "broadcast")
