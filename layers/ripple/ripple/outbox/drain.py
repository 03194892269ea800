"""Drain the outbox: committed changes and `realtime.send` messages, delivered in outbox order.

Per drained batch: three Postgres round trips (the pending rows, read under the drain lock, with
the transaction's BEGIN; one batched authorization of every distinct principal against every row
image it would receive; the ack, with the COMMIT). Each run of rows of
one kind goes to its feature: changes to `changes.plan` + `changes.delivery`, broadcasts to
`broadcast.outbound`. A crash before the ack redelivers the batch (at-least-once).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import groupby
from typing import Any

import psycopg
from pydantic import BaseModel

from ripple import codec
from ripple.broadcast.outbound import relay_outbox
from ripple.budget import budget
from ripple.changes import delivery
from ripple.changes.change import Change
from ripple.changes.plan import Authorizer, plan
from ripple.channels.closing import close_expired
from ripple.channels.lifecycle import depart, sweep
from ripple.config import settings
from ripple.db import Database, await_commit
from ripple.gateway import ConnectionsApi
from ripple.log import logger
from ripple.metrics import record_fanout
from ripple.outbox.log import expire
from ripple.shards.api import connections_api_from_settings
from ripple.shards.wire import ShardFailed
from ripple.store import DynamoDBStore, Store

# The drain lock, then realtime.pending with each row's log position; and its ack
# (sql/013_outbox_log.sql): the delivered outbox ids as runs, the owed frames' ids, and which ids
# are `realtime.send` messages.
# Both ride with the transaction's BEGIN and COMMIT (Database.riding), so their arguments are
# written in, integers only: the limit, and the ids of _ack_statement.
PENDING = "select * from realtime.drain_pending(%d)"
ACK = "select realtime.ack('{{{runs}}}'::int8multirange, '{{{owed}}}'::bigint[], '{{{broadcasts}}}'::bigint[])"
OWE = "select realtime.owe(%s::jsonb)"
AUTHORIZE = "select * from realtime.authorize(%s::jsonb)"
# The counters of a wake worth an INFO line: connections lost or closed, posts that failed or
# were retried, frames owed, shards that failed, policies that raised, log partitions dropped.
NOTABLE = ("gone", "failed", "retries", "owed", "closed", "shard_failures", "policy_errors",
           "expired_partitions")
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
    # Checks whose policy raised (bad cast of a claim, division by zero...): denied, logged, and
    # the subscribers concerned told with a `system` error.
    policy_errors: int = 0
    dynamodb_calls: int = 0
    sweep_dynamodb_calls: int = 0
    pg_round_trips: int = 0
    posts: int = 0
    # Posts retried, frames left owed at the end, and unreachable connections closed past the deadline.
    retries: int = 0
    owed: int = 0
    closed: int = 0
    # Batches rolled back because a shard of posters never answered (died, timed out): taken
    # again once by the same wake, then left for the next wake or sweep.
    shard_failures: int = 0
    # Seconds spent in the batched authorization; per batch, rows taken and the commit → post lag
    # of its oldest row, in seconds.
    authorize_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    # Day partitions of the message log dropped past the retention window (by an hourly sweep).
    expired_partitions: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a dict (lists copied): what `dataclasses.asdict` gives, without its
        recursive deep copy, which cost more CPU per wake than the ack."""
        return {k: list(v) if isinstance(v, list) else v for k, v in vars(self).items()}


@dataclass
class Fanout:
    db: Database
    store: Store
    api: ConnectionsApi
    batch_size: int = 500
    # Bounds one drain transaction, so a wide fan-out commits in slices well inside the
    # function's timeout instead of redelivering a huge batch after a timeout.
    max_posts_per_batch: int = 10_000
    # How long a connection may stay unreachable before it is closed (it reconnects and rejoins).
    owed_deadline_seconds: float = 120.0
    # How often a sweep also keeps the message log (partitions made ahead, expired ones dropped).
    log_upkeep_seconds: float = 3600.0
    _log_upkeep_due: float = field(default=0.0, init=False, repr=False)

    def run(self, wake: WakeEvent, budget_seconds: float = 50.0) -> Stats:
        """Drain until the outbox is empty or the time budget is spent."""
        stats = Stats()
        deadline = time.monotonic() + budget_seconds
        if wake.sweep:
            # Inside the drain's budget, and a small share of it: changes come first. Its
            # requests are counted apart, so the drain's counters describe the drain alone.
            swept = self.store.calls
            self._sweep(stats, budget_seconds / 10)
            stats.sweep_dynamodb_calls = self.store.calls - swept
        calls0, trips0, posts0 = self.store.calls, self.db.round_trips, self.api.posts
        if wake.xid:
            await_commit(self.db, wake.xid)
        limit = self.batch_size
        retried: set[str] = set()
        recovered: set[str] = set()
        while time.monotonic() < deadline:
            attempt = self._attempt(limit, stats, retried, recovered)
            if attempt is None:
                continue
            taken, rows = attempt
            if rows is None:
                break
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
        if wake.sweep and time.monotonic() >= self._log_upkeep_due:
            # Upkeep, not drain work: after the counters, so a batch's statements stay its own.
            self._log_upkeep_due = time.monotonic() + self.log_upkeep_seconds
            stats.expired_partitions += expire(self.db)
        stats.posts = self.api.posts - posts0
        return stats

    def _sweep(self, stats: Stats, budget_seconds: float) -> None:
        """Depart silent presence holders. Their leaves are announced outside any drain
        transaction, so a failed shard of such an announcement is not redone: logged, counted,
        and the drain goes on."""
        try:
            stats.gone += sweep(self.store, self.api, budget_seconds=budget_seconds)
        except ShardFailed as exc:
            stats.shard_failures += 1
            logger.warning("a shard of posters failed during the presence sweep", extra={"error": str(exc)})

    def _attempt(self, limit: int, stats: Stats, retried: set[str],
                 recovered: set[str]) -> tuple[int, list | None] | None:
        """`_batch`, or None when it rolled back and is to be taken again right away (once per
        kind of failure and wake, noted in `recovered`); (0, None) when it is left for later."""
        try:
            return self._batch(limit, stats, retried)
        except psycopg.OperationalError as exc:
            # A lost connection rolled the batch back (nothing acked): take it again, once,
            # on a new connection; posts already made are at-least-once duplicates.
            self.api.take_owing()  # the batch is planned again from scratch
            if "reconnected" in recovered or not getattr(exc, "connection_lost", False):
                raise
            recovered.add("reconnected")
            return None
        except ShardFailed as exc:
            # Rolled back, nothing acked: the batch is taken again (once now, else by the next
            # wake or sweep); posts already made are at-least-once duplicates.
            self.api.take_owing()
            stats.shard_failures += 1
            logger.warning("a shard of posters failed; the batch is redelivered",
                           extra={"error": str(exc), "failures": stats.shard_failures})
            if "shard" in recovered:
                return 0, None
            recovered.add("shard")
            return None

    def _batch(self, limit: int, stats: Stats, retried: set[str]) -> tuple[int, list | None]:
        """One drain transaction: pending rows under the lock, deliver, owe, ack. Returns how many rows
        were taken and the rows read (None when the outbox was empty)."""
        with self.db.riding() as conn:
            rows = self.db.begin_with(conn, PENDING % int(limit))
            if not rows:
                conn.execute("commit")
                return 0, None

            def authorize(request: dict[str, Any], conn: Any = conn) -> list[dict[str, Any]]:
                started = time.monotonic()
                try:
                    return self.db.execute(conn, AUTHORIZE, (codec.dumps(request),))
                finally:
                    stats.authorize_seconds += time.monotonic() - started

            # Posting inside the drain transaction: a crash before the ack commits redelivers
            # the batch instead of losing it (at-least-once).
            taken = self._deliver(rows, stats, authorize, retried)
            owing = self.api.take_owing()
            if owing:
                self.db.execute(conn, OWE, (codec.dumps(_owed_entries(rows, owing)),))
                stats.owed += sum(len(frames) for frames in owing.values())
            self.db.commit_with(conn, _ack_statement(rows[:taken]))
        return taken, rows

    def _deliver(self, rows: list[dict[str, Any]], stats: Stats, authorize: Authorizer,
                 retried: set[str]) -> int:
        """Deliver a leading run of `rows` worth at most max_posts_per_batch posts (and always at
        least one row); return how many rows that was. Frames owed from earlier batches go first;
        every change of the batch is matched and authorized together (one round trip); runs of one
        kind are posted in outbox order."""
        self._retry_owed(rows, stats, retried)
        changes = [Change.from_outbox(r) for r in rows if r["kind"] == "change"]
        planned = plan(changes, self.store, authorize)
        frames = dict(zip((c.id for c in changes), planned.frames))
        stats.principals += planned.principals
        stats.checks += planned.checks
        stats.policy_errors += planned.policy_errors
        budget, taken = self.max_posts_per_batch, 0
        for kind, run in groupby(rows, key=lambda r: r["kind"]):
            group = list(run)
            count, posts = len(group), 0
            if kind == "change":
                count = _fitting(group, frames, budget, first=taken == 0)
                pairs = [pair for row in group[:count] for pair in frames[row["id"]]]
                outcome = delivery.post(self.store, self.api, pairs)
                posts = len(pairs)
                stats.deliveries += posts
                stats.gone += len(outcome.gone)
                stats.failed += outcome.failed
                stats.retries += outcome.retries
            elif kind == "owed":
                pass  # posted above, ahead of everything newer
            elif kind == "broadcast":
                posts = relay_outbox(self.store, self.api, [r["payload"] for r in group],
                                     [str(r["position"]) for r in group]).deliveries
                stats.deliveries += posts
            budget -= posts
            taken += count
            if count < len(group) or budget <= 0:
                break
        # Subscribers whose token ran out are told once, and their channels closed.
        close_expired(self.store, self.api, planned.expired)
        # Subscribers whose policy raised are told, after the batch's deliveries.
        delivery.tell(self.store, self.api, planned.refused)
        return taken

    def _retry_owed(self, rows: list[dict[str, Any]], stats: Stats, retried: set[str]) -> None:
        """Post each connection's owed frames, in order, once per drain. A connection unreachable
        for longer than owed_deadline_seconds is closed and departs: its client reconnects."""
        frames, since = _owed(rows)
        if not frames:
            return  # nothing owed in this batch: nothing to post, and no deadline to check
        for cid in set(frames) & retried:
            self.api.owing.setdefault(cid, []).extend(frames.pop(cid))
        retried.update(frames)
        outcome = delivery.post(self.store, self.api, list(_pairs(frames)))
        stats.deliveries += outcome.delivered
        stats.retries += outcome.retries
        stats.gone += len(outcome.gone)
        cutoff = time.time() - self.owed_deadline_seconds
        for cid in [c for c in self.api.owing if since.get(c, float("inf")) < cutoff]:
            dropped = self.api.owing.pop(cid)
            logger.warning("closing a connection unreachable past the deadline",
                           extra={"connection_id": cid, "frames": len(dropped)})
            try:
                self.api.close(cid)
            except Exception:
                logger.exception("closing an unreachable connection failed", extra={"connection_id": cid})
            depart(self.store, self.api, cid)
            stats.closed += 1


def _pairs(frames: dict[str, list[str]]):
    for cid, owed in frames.items():
        for frame in owed:
            yield cid, frame


def _owed(rows: list[dict[str, Any]]) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The owed rows among `rows`, per connection: its frames in order, and when it first owed."""
    frames: dict[str, list[str]] = {}
    since: dict[str, float] = {}
    for row in rows:
        if row["kind"] == "owed":
            cid = row["payload"]["connection_id"]
            frames.setdefault(cid, []).extend(row["payload"]["frames"])
            since[cid] = min(since.get(cid, float("inf")), float(row["payload"]["since"]))
    return frames, since


def _ack_statement(rows: list[dict[str, Any]]) -> str:
    """The `realtime.ack` call for the delivered prefix of a pending batch. Pending hands outbox
    rows out in id order, so their ids are sent as runs (a multirange literal, usually one
    range): a few bytes instead of an array of every id. The statement rides with the COMMIT,
    which takes no parameters, so its arguments are written in: integers only (outbox ids)."""
    runs: list[str] = []
    start = previous = 0
    owed: list[str] = []
    broadcasts: list[str] = []
    for row in rows:
        row_id = int(row["id"])
        if row["kind"] == "owed":
            owed.append(str(-row_id))
            continue
        if row["kind"] == "broadcast":
            broadcasts.append(str(row_id))
        if start and row_id == previous + 1:
            previous = row_id
            continue
        if start:
            runs.append(f"[{start},{previous + 1})")
        start = previous = row_id
    if start:
        runs.append(f"[{start},{previous + 1})")
    return ACK.format(runs=",".join(runs), owed=",".join(owed), broadcasts=",".join(broadcasts))


def _owed_entries(rows: list[dict[str, Any]], owing: dict[str, list[str]]) -> list[dict[str, Any]]:
    """What realtime.owe stores: per connection its frames and when it first owed them."""
    since = _owed(rows)[1]
    now = time.time()
    return [{"connection_id": cid, "frames": frames, "since": since.get(cid, now)}
            for cid, frames in owing.items()]


def _fitting(group: list[dict[str, Any]], frames: dict[int, list[tuple[str, str]]], budget: int,
             first: bool) -> int:
    """How many leading changes of `group` fit in `budget` posts (the batch's first change always)."""
    count = posts = 0
    for row in group:
        owed = len(frames[row["id"]])
        if not (first and count == 0) and posts + owed > budget:
            break
        posts += owed
        count += 1
    return count


@lru_cache(maxsize=1)
def fanout() -> Fanout:
    """The container-wide fanout, its clients created once.

    Its own adapters (not the shared ones), so its counters describe the fanout alone even when
    the local stack runs every function in one process.
    """
    config = settings()
    api = connections_api_from_settings()
    api.keep_owed = True
    return Fanout(db=Database.from_settings(), store=DynamoDBStore.from_settings(), api=api,
                  batch_size=config.drain_batch_size, max_posts_per_batch=config.max_posts_per_batch,
                  owed_deadline_seconds=config.owed_deadline_seconds)


def on_wake(wake: WakeEvent, context: Any = None) -> dict:
    """Lambda entry: drain and deliver within the invocation's remaining time; returns the
    counters of what was done."""
    stats = fanout().run(wake, budget(context, margin=BUDGET_MARGIN_SECONDS, default=50.0))
    record_fanout(stats)
    counters = stats.as_dict()
    # Every wake that drained is on record in its EMF document (the same counters, one line of
    # the log); an INFO line is added only for what an operator may have to act on. A routine
    # wake's JSON line would cost more CPU than planning its batch, once per change at low rates.
    if any(getattr(stats, name) for name in NOTABLE):
        logger.info("fanout", extra=counters)
    else:
        logger.debug("fanout", extra=counters)
    return counters
