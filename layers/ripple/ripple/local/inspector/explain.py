"""Explain delivery: for one change (a table row, an outbox entry, or a row typed in), every
binding that could concern it and why it would or would not receive it.

The answer comes from the fanout's own code: `plan` says who receives what (the frames it
would post), and its helpers `_matches` (event and filter), `_authorize` (RLS and column
privileges, one batched `realtime.authorize` call) and `Binding.live` (token expiry) say why.
Nothing is posted and nothing is drained.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from ripple import codec
from ripple.changes.change import Change, commit_timestamp
from ripple.changes.plan import Authorizer, _authorize, _matches, _principal, plan
from ripple.local.inspector.store_view import bindings_on, sub_of
from ripple.protocol.serializer import V1, V2, decode
from ripple.store import Binding, DynamoDBStore

OPS = ("INSERT", "UPDATE", "DELETE")


class ExplainError(ValueError):
    """The change to explain is not well formed; str() says why."""


def hypothetical(schema: str, table: str, op: str, record: dict[str, Any] | None,
                 old_record: dict[str, Any] | None, columns: list[dict[str, str]]) -> Change:
    """A Change as the capture trigger would have written it, for rows typed in."""
    if op not in OPS:
        raise ExplainError(f"type must be one of {', '.join(OPS)}")
    if op != "DELETE" and not isinstance(record, dict):
        raise ExplainError("record must be a JSON object for INSERT and UPDATE")
    if op != "INSERT" and not isinstance(old_record, dict):
        if op == "UPDATE":
            old_record = dict(record or {})
        else:
            raise ExplainError("old_record must be a JSON object for DELETE")
    return Change(id=0, schema=schema, table=table, type=op,
                  record=record if op != "DELETE" else None,
                  old_record=old_record if op != "INSERT" else None, columns=columns,
                  commit_timestamp=commit_timestamp(dt.datetime.now(dt.UTC)))


def explain(change: Change, store: DynamoDBStore, authorize: Authorizer, now: float | None = None
            ) -> dict[str, Any]:
    """`{"change": …, "subscribers": [...]}`: per binding, `receives` (what `plan` decided) and
    the checks behind it — event, filter, token, rls, columns — each `{"ok", "detail"}`."""
    now = time.time() if now is None else now
    received = _received(plan([change], store, authorize).frames[0])
    bindings = bindings_on(store, change.schema, change.table)
    live = [b for b in bindings if b.live(now)]
    # RLS for every live binding, not only the matching ones: "would it pass if the filter did?"
    verdicts, *_ = _authorize([change], {change.id: live}, authorize)
    subscribers = []
    for b in sorted(bindings, key=lambda b: (b.connection_id, b.topic, b.id)):
        checks = _checks(b, change, now, verdicts.get((change.id, _principal(b))))
        got = received.get((b.connection_id, b.topic))
        receives = got is not None and b.id in got["ids"]
        failed = next((name for name, check in checks.items() if check["ok"] is False), None)
        subscribers.append({
            "connection_id": b.connection_id, "topic": b.topic, "binding_id": b.id,
            "role": b.role, "sub": sub_of(b.claims), "event": b.event, "filter": b.filter,
            "receives": receives, "checks": checks,
            "because": ("receives it" if receives else f"{failed}: {checks[failed]['detail']}"
                        if failed else "not matched"),
            "record": got["record"] if receives and got else None})
    return {"change": {"schema": change.schema, "table": change.table, "type": change.type,
                       "record": change.record, "old_record": change.old_record},
            "subscribers": subscribers,
            "receiving": sum(1 for s in subscribers if s["receives"])}


def _checks(b: Binding, change: Change, now: float, verdict: Any) -> dict[str, dict[str, Any]]:
    event_ok = b.wants(change.type)
    # The filter alone: the same binding with every event, so `_matches` judges just the filter.
    filter_ok = _matches(dataclasses.replace(b, event="*"), change)
    live = b.live(now)
    checks = {
        "event": {"ok": event_ok, "detail": f"listens to {b.event}, change is {change.type}"},
        "filter": {"ok": filter_ok, "detail": (f"{b.filter} " + ("matches" if filter_ok else
                                               "does not match") + " the row") if b.filter
                   else "no filter"},
        "token": {"ok": live, "detail": "no expiry" if not b.exp else
                  (f"valid for {int(b.exp - now)} s more" if live else
                   f"expired {int(now - b.exp)} s ago: the channel is told and closed")},
    }
    if not live or verdict is None:
        checks["rls"] = {"ok": None, "detail": "not checked (token expired)"}
        checks["columns"] = {"ok": None, "detail": "not checked"}
        return checks
    claims = codec.loads(b.claims or "{}")
    who = f"{b.role}" + (f" sub={claims['sub']}" if isinstance(claims, dict) and "sub" in claims else "")
    checks["rls"] = {"ok": verdict.allowed,
                     "detail": f"{who} may read this row" if verdict.allowed else
                     f"{who} may not read this row (SELECT grant or RLS policy)"}
    hidden = sorted(verdict.hidden) if verdict.allowed else []
    notes = []
    if hidden:
        notes.append(f"hidden from this role: {', '.join(hidden)}")
    if b.select:
        notes.append(f"select: {', '.join(b.select)}")
    if change.type == "UPDATE" and verdict.allowed and not verdict.show_old:
        notes.append("old_record sent empty: the role could not read the old row")
    checks["columns"] = {"ok": True if verdict.allowed else None,
                         "hidden": hidden, "detail": "; ".join(notes) or "every column"}
    return checks


def _received(frames: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(connection, topic) → the binding ids and record of the frame `plan` built for it."""
    out = {}
    for connection_id, frame in frames:
        message = decode(frame, V2 if frame.startswith("[") else V1)
        data = message.payload["data"]
        out[(connection_id, message.topic)] = {"ids": message.payload["ids"],
                                               "record": data.get("record", data.get("old_record"))}
    return out
