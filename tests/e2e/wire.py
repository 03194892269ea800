"""A raw Phoenix-protocol client over a real WebSocket, for asserting exact frames and errors."""
from __future__ import annotations

import json
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
