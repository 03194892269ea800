"""What the Inspector shows that no table holds: frames as they cross the local gateway, and
each fanout run. In memory, bounded, thread-safe; the gateway and the bridge feed it.

- refused joins: a `phx_join` answered with an error reply, or a `system` error on a binding;
- refused connections: a `$connect` answered with a non-2xx status;
- outbox entries: captured (the row's `captured_at`), picked up (the start of the fanout run
  that drained it), posted (each frame carrying it, as the gateway forwarded it) and acked (the
  end of that run, when the drain committed);
- the frames each connection sent and received, for the page's per-connection view.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ripple.changes.change import commit_timestamp
from ripple.protocol.serializer import V1, V2, FrameError, decode

log = logging.getLogger("ripple.local.inspector")
KEEP_ENTRIES = 200
PENDING = """
select id, kind, schema_name, table_name, op, record, old_record, captured_at
from realtime.outbox_pending order by id limit 500"""
STILL_THERE = "select id from realtime.outbox_pending where id = any(%s)"
KEEP_REFUSALS = 100
KEEP_FRAMES = 50


def _now_ms() -> float:
    return time.time() * 1000


def _decode(text: str):
    try:
        return decode(text, V2 if text.lstrip().startswith("[") else V1)
    except FrameError:
        return None


def change_key(schema: str, table: str, op: str, commit_timestamp: str,
               record: dict[str, Any] | None, old_record: dict[str, Any] | None) -> str:
    """How a posted frame is matched to its outbox entry (the payload carries no outbox id):
    table, event, capture time (ms) and the row's `id` column, when it has one."""
    row = record if op != "DELETE" else old_record
    return f"{schema}.{table}|{op}|{commit_timestamp}|{(row or {}).get('id')}"


@dataclass
class Entry:
    """One outbox entry as the Inspector saw it; times are epoch milliseconds."""

    key: str
    kind: str
    schema: str | None
    table: str | None
    op: str | None
    id: int | None = None
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None
    captured: float | None = None
    picked_up: float | None = None
    acked: float | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        posted = [d["posted"] for d in self.deliveries]

        def since(a: float | None, b: float | None) -> float | None:
            return round(b - a, 1) if a is not None and b is not None else None

        return {"id": self.id, "kind": self.kind, "schema": self.schema, "table": self.table,
                "op": self.op, "captured": self.captured, "picked_up": self.picked_up,
                "posted_first": min(posted, default=None), "posted_last": max(posted, default=None),
                "acked": self.acked, "deliveries": self.deliveries,
                "latency_ms": {"captured_to_picked_up": since(self.captured, self.picked_up),
                               "picked_up_to_posted": since(self.picked_up, max(posted, default=None)),
                               "captured_to_posted": since(self.captured, max(posted, default=None)),
                               "posted_to_acked": since(max(posted, default=None), self.acked),
                               "picked_up_to_acked": since(self.picked_up, self.acked)}}


class Activity:
    """The gateway's and the fanout's recent history, for the Inspector's JSON API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._joins: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.refusals: deque[dict[str, Any]] = deque(maxlen=KEEP_REFUSALS)
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.frames: dict[str, deque[dict[str, Any]]] = {}
        self.runs: deque[dict[str, Any]] = deque(maxlen=50)

    # -- the gateway ----------------------------------------------------------------------------
    def connect_refused(self, status: int, body: str | None) -> None:
        with self._lock:
            self.refusals.appendleft({"at": _now_ms(), "kind": "connect", "status": status,
                                      "reason": body or "", "connection_id": None, "topic": None})

    def received(self, connection_id: str, text: str) -> None:
        """A client frame, before `$default` sees it."""
        message = _decode(text)
        with self._lock:
            self._frame(connection_id, "in", message, text)
            if message is not None and message.event == "phx_join":
                self._joins[(connection_id, message.ref)] = {"topic": message.topic,
                                                             "payload": message.payload}

    def sent(self, connection_id: str, data: bytes) -> None:
        """A frame the backend posted to a connection."""
        text = data.decode("utf-8", "replace")
        message = _decode(text)
        with self._lock:
            self._frame(connection_id, "out", message, text)
            if message is None:
                return
            payload = message.payload if isinstance(message.payload, dict) else {}
            if message.event == "phx_reply":
                join = self._joins.pop((connection_id, message.ref), None)
                if join is not None and payload.get("status") == "error":
                    reason = (payload.get("response") or {}).get("reason", "")
                    self._refused(connection_id, message.topic, "join", str(reason))
            elif message.event == "system" and payload.get("status") == "error":
                self._refused(connection_id, message.topic, "binding", str(payload.get("message", "")))
            elif message.event == "postgres_changes":
                data_ = payload.get("data") or {}
                key = change_key(data_.get("schema", ""), data_.get("table", ""),
                                 data_.get("type", ""), data_.get("commit_timestamp", ""),
                                 data_.get("record"), data_.get("old_record"))
                entry = self._entry(key, "change", data_.get("schema"), data_.get("table"),
                                    data_.get("type"))
                entry.deliveries.append({"connection_id": connection_id, "topic": message.topic,
                                         "ids": payload.get("ids"), "posted": _now_ms()})

    def disconnected(self, connection_id: str) -> None:
        with self._lock:
            self._joins = {k: v for k, v in self._joins.items() if k[0] != connection_id}

    # -- the fanout -----------------------------------------------------------------------------
    def run(self, started: float, finished: float, drained: list[dict[str, Any]],
            result: dict[str, Any] | None) -> None:
        """One fanout run: `drained` are the outbox rows it removed (seen before it started)."""
        with self._lock:
            for row in drained:
                key = change_key(row["schema_name"] or "", row["table_name"] or "", row["op"] or "",
                                 commit_timestamp(row["captured_at"]), row["record"],
                                 row["old_record"]) if row["kind"] == "change" else f"#{row['id']}"
                entry = self._entry(key, row["kind"], row["schema_name"], row["table_name"], row["op"])
                entry.id, entry.captured = row["id"], row["captured_at"].timestamp() * 1000
                entry.record, entry.old_record = row["record"], row["old_record"]
            for entry in self.entries.values():
                if entry.acked is None and (entry.deliveries or entry.id is not None):
                    entry.picked_up = entry.picked_up or started
                    entry.acked = finished
            if result and (result.get("changes") or result.get("deliveries")):
                self.runs.appendleft({"started": started, "finished": finished, **result})

    # -- reading --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"refusals": list(self.refusals),
                    "outbox": [e.view() for e in reversed(self.entries.values())],
                    "runs": list(self.runs)}

    def entry_by_id(self, outbox_id: int) -> Entry | None:
        with self._lock:
            return next((e for e in self.entries.values() if e.id == outbox_id), None)

    def frames_of(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.frames.get(connection_id, ()))

    # -- internals ------------------------------------------------------------------------------
    def _frame(self, connection_id: str, direction: str, message: Any, text: str) -> None:
        frames = self.frames.setdefault(connection_id, deque(maxlen=KEEP_FRAMES))
        frames.appendleft({"at": _now_ms(), "direction": direction,
                           "topic": message.topic if message else None,
                           "event": message.event if message else None, "text": text[:2000]})
        while len(self.frames) > 500:
            self.frames.pop(next(iter(self.frames)))

    def _refused(self, connection_id: str, topic: str, kind: str, reason: str) -> None:
        self.refusals.appendleft({"at": _now_ms(), "kind": kind, "connection_id": connection_id,
                                  "topic": topic, "reason": reason,
                                  "code": reason.split(":", 1)[0] if ":" in reason else reason})

    def _entry(self, key: str, kind: str, schema: str | None, table: str | None,
               op: str | None) -> Entry:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(key, kind, schema, table, op)
            while len(self.entries) > KEEP_ENTRIES:
                self.entries.popitem(last=False)
        return entry


Handler = Callable[[dict, Any], dict]


def observed(handler: Handler, db_url: str, activity: Activity) -> Handler:
    """The fanout handler, with each run reported to `activity`: the outbox rows pending when it
    started and gone when it finished are the ones it drained."""
    state: dict[str, psycopg.Connection[Any]] = {}

    def query(sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        conn = state.get("conn")
        if conn is None or conn.closed:
            conn = state["conn"] = psycopg.connect(db_url, autocommit=True, row_factory=dict_row)
        rows: list[dict[str, Any]] = conn.execute(sql, params).fetchall()
        return rows

    def run(event: dict, context: Any) -> dict:
        try:
            before = query(PENDING)
        except psycopg.Error:
            log.warning("inspector could not read the outbox", exc_info=True)
            before = []
        started = _now_ms()
        result = handler(event, context)
        finished = _now_ms()
        try:
            left = {r["id"] for r in query(STILL_THERE, ([r["id"] for r in before],))} if before else set()
            activity.run(started, finished, [r for r in before if r["id"] not in left], result)
        except psycopg.Error:
            log.warning("inspector could not read the outbox", exc_info=True)
        return result

    return run
