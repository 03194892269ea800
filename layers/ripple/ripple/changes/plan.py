"""What a batch of changes owes whom: candidate bindings from the buckets each change derives,
filters evaluated here, RLS verdicts from one batched authorization, each distinct frame encoded
once. Pure over the store's interface and an authorization callable, so it is unit-tested on the
in-memory store.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ripple import codec
from ripple.changes.change import Change
from ripple.changes.filters import FilterError, canonical, parse_filter
from ripple.channels.closing import Expired
from ripple.gateway import MAX_FRAME_BYTES
from ripple.log import logger
from ripple.protocol.message import Message, system
from ripple.protocol.serializer import encode
from ripple.store import MAX_INDEXED_VALUE, Binding, Store, eq_key, table_key

# realtime.authorize: {principals, images, checks} in, one {principal, image, allowed, hidden,
# error, reason} row per check out (one round trip for the whole batch); `error` is the SQLSTATE of
# a policy that raised for that principal, and that check is denied.
Authorizer = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Verdict:
    """What one principal may see of one change: the row at all, its old image, which columns."""

    allowed: bool
    show_old: bool = True
    hidden: frozenset[str] = frozenset()
    # The SQLSTATE of a policy that raised for this principal (the row or its old image withheld).
    error: str | None = None


@dataclass
class Plan:
    """Per change, in order, the (connection, frame) pairs it owes; and the channels whose token
    had expired when a change would have reached them."""

    frames: list[list[tuple[str, str]]]
    expired: list[Expired]
    principals: int = 0
    checks: int = 0
    # Checks whose policy raised; and the `system` error owed to each channel it hit, once per
    # channel and table, as (connection, frame).
    policy_errors: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def plan(changes: list[Change], store: Store, authorize: Authorizer) -> Plan:
    """What a batch of changes owes whom; each distinct frame encoded once."""
    candidates, expired = _candidates(changes, store)
    verdicts, principals, checks, errors = _authorize(changes, candidates, authorize)
    encoded: dict[tuple, str] = {}
    refused: dict[tuple[str, str, str], tuple[str, str]] = {}
    out = []
    for change in changes:
        matched: dict[tuple, set[int]] = defaultdict(set)
        table = f"{change.schema}.{change.table}"
        for binding in candidates[change.id]:
            verdict = verdicts[(change.id, (binding.role, binding.claims))]
            if verdict.error and (where := (binding.connection_id, binding.topic, table)) not in refused:
                refused[where] = (binding.connection_id,
                                  encode(_policy_error(binding, change, verdict.error), binding.vsn))
            if verdict.allowed:
                view = (binding.select, verdict.hidden, verdict.show_old)
                matched[(binding.connection_id, binding.topic, view, binding.vsn, binding.positions)].add(binding.id)
        frames = []
        for (connection_id, topic, view, vsn, positions), ids in matched.items():
            key = (change.id, topic, view, vsn, positions, tuple(sorted(ids)))
            if key not in encoded:
                encoded[key] = _frame(change, topic, view, vsn, list(key[5]), positions)
            frames.append((connection_id, encoded[key]))
        out.append(frames)
    return Plan(out, expired, principals, checks, errors, list(refused.values()))


def _policy_error(binding: Binding, change: Change, code: str) -> Message:
    # The SQLSTATE only: the database's message can quote values of the row being withheld.
    return system(binding.topic, "postgres_changes", "error",
                  f"PolicyError: a row-level security policy of {change.schema}.{change.table} raised "
                  f"an error for this subscriber (SQLSTATE {code}); what it could not check was withheld",
                  binding.join_ref)


View = tuple[tuple[str, ...] | None, frozenset[str], bool]


def _frame(change: Change, topic: str, view: View, vsn: str, ids: list[int], positions: bool) -> str:
    """The encoded push; a change too large for one API Gateway message is sent cut, as
    Supabase does (see Change.data). With `positions`, `errors` leads with "position:<n>"."""
    select, hidden, show_old = view
    data = _positioned(change, change.data(select, hidden, show_old), positions)
    frame = encode(Message(topic=topic, event="postgres_changes", payload={"ids": ids, "data": data}), vsn)
    if len(frame.encode()) <= MAX_FRAME_BYTES:
        return frame
    data = _positioned(change, change.data(select, hidden, show_old, cut=True), positions)
    return encode(Message(topic=topic, event="postgres_changes", payload={"ids": ids, "data": data}), vsn)


def position_tag(position: int) -> str:
    """The log position as the first entry of `errors`: the one field of `data`, besides the
    row itself, that realtime-js and realtime-py both hand to the callback unmodified."""
    return f"position:{position}"


def _positioned(change: Change, data: dict[str, Any], positions: bool) -> dict[str, Any]:
    if not positions:
        return data
    return {**data, "errors": [position_tag(change.position), *(data["errors"] or [])]}


def _candidates(changes: list[Change], store: Store
                ) -> tuple[dict[int, list[Binding]], list[Expired]]:
    """Per change, the live bindings whose event and filter match it (Queries on derived keys
    only); and the channels of matching bindings whose token has expired."""
    buckets = {k for c in changes for k in _table_buckets(c)}
    found, registry = store.bindings_under(buckets)
    change_eq: dict[int, list[str]] = {}
    for change in changes:
        keys = []
        for column in registry.get(table_key(change.schema, change.table), ()):
            if column not in change.row:
                continue
            value = canonical(change.row[column], change.types.get(column, "text"))
            if value is not None and len(value) <= MAX_INDEXED_VALUE:
                keys.append(eq_key(change.schema, change.table, column, value))
        change_eq[change.id] = keys
    more, _ = store.bindings_under({k for keys in change_eq.values() for k in keys} - set(found))
    found.update(more)
    now = time.time()
    candidates: dict[int, list[Binding]] = {}
    expired: list[Expired] = []
    for change in changes:
        matching = [b for key in (*_table_buckets(change), *change_eq[change.id])
                    for b in found.get(key, ()) if _matches(b, change)]
        live = [b for b in matching if b.exp == 0 or b.exp > now]  # Binding.live, inlined: per binding
        candidates[change.id] = live
        if len(live) < len(matching):
            expired.extend(Expired(b.connection_id, b.topic, b.vsn, b.join_ref, b.exp)
                           for b in matching if not b.live(now))
    return candidates, expired


def _principal(binding: Binding) -> tuple[str, str]:
    return (binding.role, binding.claims)


def _authorize(changes: list[Change], candidates: dict[int, list[Binding]], authorize: Authorizer
               ) -> tuple[dict[tuple[int, tuple[str, str]], Verdict], int, int, int]:
    """One database round trip for the whole batch: each distinct principal (role + claims) is
    checked once per row image it would receive, however many subscribers share it. Also returns
    how many checks raised (each logged once per principal, table and error)."""
    principals: dict[tuple[str, str], int] = {}
    images: list[dict[str, Any]] = []
    checks: list[list[int]] = []
    slots: dict[tuple[int, tuple[str, str]], tuple[int, int | None]] = {}
    for change in changes:
        wanted = {_principal(b) for b in candidates[change.id]}
        if not wanted:
            continue
        primary = len(images)
        images.append({"schema": change.schema, "table": change.table, "row": change.row})
        old = None
        if change.type == "UPDATE":
            old = len(images)
            images.append({"schema": change.schema, "table": change.table, "row": change.old_record or {}})
        for principal in sorted(wanted):
            index = principals.setdefault(principal, len(principals))
            checks.append([index, primary])
            if old is not None:
                checks.append([index, old])
            slots[(change.id, principal)] = (primary, old)
    if not checks:
        return {}, 0, 0, 0
    request = {"principals": [{"role": role, "claims": codec.loads(claims)} for role, claims in principals],
               "images": images, "checks": checks}
    answers = {(row["principal"], row["image"]): row for row in authorize(request)}
    _log_policy_errors(answers.values(), list(principals), images)
    verdicts = {}
    for (change_id, principal), (primary, old) in slots.items():
        index = principals[principal]
        first = answers.get((index, primary))
        second = answers.get((index, old)) if old is not None else None
        error = next((a.get("error") for a in (first, second) if a and a.get("error")), None)
        if not first or not first["allowed"]:
            verdicts[(change_id, principal)] = Verdict(False, error=error)
            continue
        verdicts[(change_id, principal)] = Verdict(
            True, show_old=old is None or bool(second and second["allowed"]),
            hidden=frozenset(first["hidden"] or ()), error=error)
    return verdicts, len(principals), len(checks), sum(1 for a in answers.values() if a.get("error"))


def _log_policy_errors(answers: Iterable[dict[str, Any]], principals: list[tuple[str, str]],
                       images: list[dict[str, Any]]) -> None:
    """One log line per principal, table and error: a raising policy is the database's bug to fix."""
    seen: dict[tuple[int, str, str, str], int] = {}
    for answer in answers:
        if answer.get("error"):
            image = images[answer["image"]]
            key = (answer["principal"], f"{image['schema']}.{image['table']}", answer["error"],
                   answer.get("reason") or "")
            seen[key] = seen.get(key, 0) + 1
    for (index, table, code, reason), count in seen.items():
        role, claims = principals[index]
        logger.error("row-level security policy raised; withheld from this principal only",
                     extra={"table": table, "sqlstate": code, "error": reason, "role": role,
                            "sub": codec.loads(claims).get("sub"), "checks": count})


def _table_buckets(change: Change) -> tuple[str, str, str]:
    return (table_key(change.schema, change.table), table_key(change.schema, "*"), table_key("*", "*"))


def _matches(binding: Binding, change: Change) -> bool:
    if binding.event != "*" and binding.event != change.type:  # Binding.wants, inlined: per binding
        return False
    if not binding.filter:
        return True
    try:
        return parse_filter(binding.filter).matches(change.row, change.types)
    except FilterError:
        # The table changed shape since the join validated this filter; it can no longer match.
        return False
