"""Drain the outbox and push each change to the subscribers that match it and may read it.

Per drained batch: four Postgres statements (drain lock, pending rows, one batched authorization
of every distinct principal against every row image it would receive, ack), DynamoDB Queries on the buckets
the changes name (never a Scan), filters evaluated here, one PostToConnection per
(connection, channel, change), each distinct message encoded once. Posts to one connection keep
the changes' order; different connections are posted to concurrently.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from itertools import groupby
from typing import Any

from pydantic import BaseModel

from ripple import codec
from ripple.broadcast.outbound import OutboundMessage, send
from ripple.budget import budget
from ripple.changes.binding import MAX_INDEXED_VALUE, Binding, eq_key, table_key
from ripple.changes.change import Change
from ripple.changes.filters import FilterError, canonical, parse_filter
from ripple.channels.closing import close_expired
from ripple.config import settings
from ripple.db import Database, await_commit
from ripple.gateway import ConnectionsApi, Delivery
from ripple.log import logger
from ripple.metrics import record_fanout
from ripple.presence.tracker import depart, sweep
from ripple.protocol.message import Message
from ripple.protocol.serializer import encode
from ripple.store import Store

DRAIN_LOCK = "select pg_advisory_xact_lock(hashtext('realtime.drain'))"
PENDING = "select * from realtime.pending(%s)"
ACK = "select realtime.ack(%s)"
AUTHORIZE = "select * from realtime.authorize(%s::jsonb)"
# Kept back from the invocation's remaining time: the batch in hand posts, acks and returns in it.
BUDGET_MARGIN_SECONDS = 10.0


class WakeEvent(BaseModel):
    """What wakes the fanout: the writer's xid from Postgres, or a scheduled sweep."""

    xid: str | None = None
    sweep: bool = False


@dataclass
class Stats:
    """What one wake-up did; also the benchmark's per-change cost counters."""

    batches: int = 0
    changes: int = 0
    deliveries: int = 0
    gone: int = 0
    failed: int = 0
    # Authorization: distinct (role, claims) evaluated, and (principal, row image) checks made.
    principals: int = 0
    checks: int = 0
    dynamodb_calls: int = 0
    pg_round_trips: int = 0
    posts: int = 0
    # Posts botocore retried (throttling, 5xx); seconds spent in the batched authorization.
    retries: int = 0
    authorize_seconds: float = 0.0
    # Per batch: rows taken, and the commit → post lag of its oldest change, in seconds.
    sizes: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)


@dataclass
class Fanout:
    db: Database
    store: Store
    api: ConnectionsApi
    batch_size: int = 500
    # Bounds one drain transaction, so a wide fan-out commits in slices well inside the
    # function's timeout instead of redelivering a huge batch after a timeout.
    max_posts_per_batch: int = 10_000

    def run(self, wake: WakeEvent, budget_seconds: float = 50.0) -> Stats:
        """Drain until the outbox is empty or the time budget is spent."""
        stats = Stats()
        calls0, trips0, posts0 = self.store.calls, self.db.round_trips, self.api.posts
        retries0 = self.api.retries
        if wake.xid:
            await_commit(self.db, wake.xid)
        deadline = time.monotonic() + budget_seconds
        if wake.sweep:
            # Inside the drain's budget, and a small share of it: changes come first.
            stats.gone += sweep(self.store, self.api, budget_seconds=budget_seconds / 10)
        limit = self.batch_size
        while time.monotonic() < deadline:
            with self.db.transaction() as conn:
                self.db.execute(conn, DRAIN_LOCK)
                rows = self.db.execute(conn, PENDING, (limit,))
                if not rows:
                    break
                # Posting inside the drain transaction: a crash before the ack commits redelivers
                # the batch instead of losing it (at-least-once).
                taken = self._deliver_rows(rows, stats, lambda request: self.db.execute(
                    conn, AUTHORIZE, (codec.dumps(request),)))
                self.db.execute(conn, ACK, ([r["id"] for r in rows[:taken]],))
            stats.batches += 1
            stats.changes += taken
            stats.sizes.append(taken)
            stats.lags.append(max(0.0, time.time() - min(r["captured_at"] for r in rows[:taken]).timestamp()))
            if taken < len(rows):
                # A wide fan-out: read only about what one transaction can post, so the rows
                # left over are not matched and authorized again and again.
                limit = max(1, taken)
            elif len(rows) < limit:
                break
        stats.dynamodb_calls = self.store.calls - calls0
        stats.pg_round_trips = self.db.round_trips - trips0
        stats.posts = self.api.posts - posts0
        stats.retries = self.api.retries - retries0
        return stats

    def _deliver_rows(self, rows: list[dict], stats: Stats, authorize: Authorizer) -> int:
        """Deliver a leading run of `rows` worth at most max_posts_per_batch posts (and always at
        least one row); return how many rows that was. Every change of the batch is matched and
        authorized together (one round trip); runs of one kind are posted in outbox order."""
        changes = [Change.from_outbox(r) for r in rows if r["kind"] == "change"]
        planned = plan(changes, self.store, lambda request: _timed(authorize, request, stats))
        per_change = dict(zip((c.id for c in changes), planned.frames))
        stats.principals += planned.principals
        stats.checks += planned.checks
        budget, taken = self.max_posts_per_batch, 0
        for kind, group in groupby(rows, key=lambda r: r["kind"]):
            group = list(group)
            if kind == "change":
                count = posts = 0
                for row in group:
                    frames = per_change[row["id"]]
                    if taken + count > 0 and posts + len(frames) > budget:
                        break
                    posts += len(frames)
                    count += 1
                self._post([pair for row in group[:count] for pair in per_change[row["id"]]], stats)
                budget -= posts
            else:
                count = len(group)
                if kind == "broadcast":
                    budget -= self._broadcast([r["payload"] for r in group], stats)
            taken += count
            if count < len(group) or budget <= 0:
                break
        if planned.expired:
            # Subscribers whose token ran out are told once, and their channels closed.
            close_expired(self.store, self.api, planned.expired)
        return taken

    def _broadcast(self, payloads: list[dict], stats: Stats) -> int:
        messages = []
        for payload in payloads:
            try:
                messages.append(OutboundMessage.model_validate(payload))
            except ValueError:
                logger.warning("dropping malformed realtime.send message", extra={"payload": payload})
        delivered = send(self.store, self.api, messages).deliveries
        stats.deliveries += delivered
        return delivered

    def _post(self, frames: list[tuple[str, str]], stats: Stats) -> None:
        by_connection: dict[str, list[str]] = defaultdict(list)
        for connection_id, frame in frames:
            by_connection[connection_id].append(frame)
        stats.deliveries += len(frames)
        outcome = self.api.deliver([Delivery(cid, f) for cid, f in by_connection.items()])
        for connection_id in outcome.gone:
            depart(self.store, self.api, connection_id)
        stats.gone += len(outcome.gone)
        stats.failed += outcome.failed


Authorizer = Callable[[dict[str, Any]], list[dict[str, Any]]]


def _timed(authorize: Authorizer, request: dict[str, Any], stats: Stats) -> list[dict[str, Any]]:
    started = time.monotonic()
    try:
        return authorize(request)
    finally:
        stats.authorize_seconds += time.monotonic() - started


@dataclass(frozen=True)
class Verdict:
    """What one principal may see of one change: the row at all, its old image, which columns."""

    allowed: bool
    show_old: bool = True
    hidden: frozenset[str] = frozenset()


@dataclass
class Plan:
    """Per change, in order, the (connection, frame) pairs it owes; and the channels whose token
    had expired when a change would have reached them, as (connection, topic, vsn, join_ref, exp)."""

    frames: list[list[tuple[str, str]]]
    expired: list[tuple[str, str, str, str | None, int]]
    principals: int = 0
    checks: int = 0


def plan(changes: list[Change], store: Store, authorize: Authorizer) -> Plan:
    """What a batch of changes owes whom; each distinct frame encoded once."""
    candidates, expired = _candidates(changes, store)
    verdicts, principals, checks = _authorize(changes, candidates, authorize)
    encoded: dict[tuple, str] = {}
    out = []
    for change in changes:
        matched: dict[tuple, set[int]] = defaultdict(set)
        for binding in candidates[change.id]:
            verdict = verdicts[(change.id, _principal(binding))]
            if verdict.allowed:
                view = (binding.select, verdict.hidden, verdict.show_old)
                matched[(binding.connection_id, binding.topic, view, binding.vsn)].add(binding.id)
        frames = []
        for (connection_id, topic, view, vsn), ids in matched.items():
            key = (change.id, topic, view, vsn, tuple(sorted(ids)))
            if key not in encoded:
                payload = {"ids": list(key[4]), "data": change.data(*view)}
                encoded[key] = encode(Message(topic=topic, event="postgres_changes", payload=payload), vsn)
            frames.append((connection_id, encoded[key]))
        out.append(frames)
    return Plan(out, expired, principals, checks)


def _candidates(changes: list[Change], store: Store
                ) -> tuple[dict[int, list[Binding]], list[tuple[str, str, str, str | None, int]]]:
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
    expired = []
    for change in changes:
        matching = [b for key in (*_table_buckets(change), *change_eq[change.id])
                    for b in found.get(key, ()) if _matches(b, change)]
        candidates[change.id] = [b for b in matching if b.live(now)]
        expired.extend((b.connection_id, b.topic, b.vsn, b.join_ref, b.exp) for b in matching if not b.live(now))
    return candidates, expired


def _principal(binding: Binding) -> tuple[str, str]:
    return (binding.role, binding.claims)


def _authorize(changes: list[Change], candidates: dict[int, list[Binding]],
               authorize: Authorizer) -> tuple[dict[tuple[int, tuple[str, str]], Verdict], int, int]:
    """One database round trip for the whole batch: each distinct principal (role + claims) is
    checked once per row image it would receive, however many subscribers share it."""
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
        return {}, 0, 0
    request = {"principals": [{"role": role, "claims": codec.loads(claims)} for role, claims in principals],
               "images": images, "checks": checks}
    answers = {(row["principal"], row["image"]): row for row in authorize(request)}
    verdicts = {}
    for (change_id, principal), (primary, old) in slots.items():
        index = principals[principal]
        first = answers.get((index, primary))
        if not first or not first["allowed"]:
            verdicts[(change_id, principal)] = Verdict(False)
            continue
        second = answers.get((index, old)) if old is not None else None
        verdicts[(change_id, principal)] = Verdict(
            True, show_old=old is None or bool(second and second["allowed"]),
            hidden=frozenset(first["hidden"] or ()))
    return verdicts, len(principals), len(checks)


def _table_buckets(change: Change) -> tuple[str, str, str]:
    return (table_key(change.schema, change.table), table_key(change.schema, "*"), table_key("*", "*"))


def _matches(binding: Binding, change: Change) -> bool:
    if not binding.wants(change.type):
        return False
    if not binding.filter:
        return True
    try:
        return parse_filter(binding.filter).matches(change.row, change.types)
    except FilterError:
        # The table changed shape since the join validated this filter; it can no longer match.
        return False


@lru_cache(maxsize=1)
def fanout() -> Fanout:
    """The container-wide fanout, its clients created once.

    Its own adapters (not the shared ones), so its counters describe the fanout alone even when
    the local stack runs every function in one process.
    """
    config = settings()
    return Fanout(db=Database.from_settings(), store=Store.from_settings(),
                  api=ConnectionsApi.from_settings(),
                  batch_size=config.drain_batch_size, max_posts_per_batch=config.max_posts_per_batch)


def on_wake(wake: WakeEvent, context: Any = None) -> dict:
    """Lambda entry: drain and deliver within the invocation's remaining time; returns the
    counters of what was done."""
    stats = fanout().run(wake, budget(context, margin=BUDGET_MARGIN_SECONDS, default=50.0))
    record_fanout(stats)
    # An idle wake (a sweep that found nothing) is routine; only work done is worth an INFO line.
    (logger.info if stats.batches else logger.debug)("fanout", extra=asdict(stats))
    return asdict(stats)
