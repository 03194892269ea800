"""The metrics Ripple emits (namespace `Ripple`, dimension `function`), computed from what each
feature already reports: the fanout's Stats, the router's frames and replies, connection
outcomes, notification delivery statuses. template.yaml's alarms and dashboard name these.

| metric | unit | from |
|---|---|---|
| Changes, Deliveries, Posts, Gone, Failed, Retries, Batches, ShardFailures | Count | fanout, per invocation |
| BatchSize | Count | fanout, one value per batch |
| DeliveryLag | Milliseconds | fanout, per batch: commit (capture) of its oldest change → posted |
| AuthorizeTime, AuthorizationChecks, Principals | Milliseconds / Count | fanout's batched RLS check |
| Posts, Gone, Failed, Retries, Owed | Count | poster, per shard it posted |
| Messages (dimension `event`) | Count | router, per frame |
| Joins, Refusals (dimensions `event`, `code`) | Count | router replies |
| ConnectionsOpened, ConnectionsRefused, ConnectionsClosed | Count | connect / disconnect |
| NotificationDeliveries (dimension `status`), Notifications | Count | notify |
| ColdStart | Count | every function |
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ripple.observability import metric


def record_fanout(stats: Any) -> None:
    """One wake-up's Stats; an idle wake (nothing drained, nobody departed) records nothing."""
    if not stats.batches and not stats.gone:
        return
    for name, value in (("Batches", stats.batches), ("Changes", stats.changes),
                        ("Deliveries", stats.deliveries), ("Posts", stats.posts), ("Gone", stats.gone),
                        ("Failed", stats.failed), ("Retries", stats.retries),
                        ("AuthorizationChecks", stats.checks), ("Principals", stats.principals),
                        ("ShardFailures", stats.shard_failures)):
        metric(name, value)
    metric("AuthorizeTime", round(stats.authorize_seconds * 1000, 3), MetricUnit.Milliseconds)
    for size in stats.sizes:
        metric("BatchSize", size)
    for lag in stats.lags:
        metric("DeliveryLag", round(lag * 1000, 3), MetricUnit.Milliseconds)


def record_shard(answer: dict[str, Any]) -> None:
    """One shard a poster function posted (its outcome as `ripple.shards.wire` shapes it)."""
    for name, value in (("Posts", answer["posts"]), ("Gone", len(answer["gone"])), ("Failed", answer["failed"]),
                        ("Retries", answer["retries"]), ("Owed", sum(len(frames) for _, frames in answer["owed"]))):
        metric(name, value)


def record_frame(event: str) -> None:
    """A client frame the router decoded."""
    metric("Messages", event=event)


def record_reply(request: Any, reply: Any) -> None:
    """A reply the router sent: a refused request by its error code, an accepted join."""
    if reply.event != "phx_reply" or not isinstance(reply.payload, dict):
        return
    if reply.payload.get("status") == "error":
        response = reply.payload.get("response") or {}
        code = str(response.get("reason") or response.get("error") or "error").split(":", 1)[0]
        metric("Refusals", event=request.event, code=code)
    elif request.event == "phx_join":
        metric("Joins")


def record_connection(status: int) -> None:
    """A `$connect` answered with `status` (200 opens the connection)."""
    metric("ConnectionsOpened" if status == 200 else "ConnectionsRefused")


def record_disconnect() -> None:
    metric("ConnectionsClosed")


def record_notify(report: Any) -> None:
    """One delivery invocation's Report: deliveries by status."""
    if report.notifications:
        metric("Notifications", report.notifications)
    for status, count in report.statuses.items():
        metric("NotificationDeliveries", count, status=status)
