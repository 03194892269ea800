"""The handlers' metrics, as CloudWatch reads them: Embedded Metric Format documents on stdout."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.test_iam import frames, join
from tests.e2e.wire import Wire

pytestmark = pytest.mark.e2e

SCHEMA = """
create table if not exists public.metric_notes (
  id bigint generated always as identity primary key,
  body text not null
);
grant select on public.metric_notes to anon;
do $$ begin
  if not exists (select 1 from pg_publication_tables where tablename = 'metric_notes') then
    alter publication supabase_realtime add table public.metric_notes; end if;
end $$;
"""


def emf(text: str) -> list[dict]:
    """The EMF documents among stdout's lines (the JSON log lines are not)."""
    docs = []
    for line in text.splitlines():
        if line.startswith('{"_aws"'):
            docs.append(json.loads(line))
    return docs


def values(docs: list[dict], function: str, name: str, **dimensions: str) -> list[float]:
    """Every value of metric `name` the function emitted with these dimensions."""
    out: list[float] = []
    for doc in docs:
        declared = {m["Name"]: m["Unit"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
        if doc.get("function") == function and name in declared and all(doc.get(k) == v for k, v in dimensions.items()):
            out.extend(doc[name])
    return out


def test_a_delivered_change_shows_in_the_metrics(stack, db, capsys):
    db.execute(SCHEMA)
    capsys.readouterr()
    with pytest.raises(InvalidStatus):
        Wire(stack.ws_url, "not-a-jwt")
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        assert join(wire, "realtime:metrics", [{"event": "*", "schema": "public", "table": "metric_notes"}]
                    )["payload"]["status"] == "ok"
        wire.send("realtime:metrics", "no_such_event", {}, join_ref="jrealtime:metrics")
        body = str(uuid.uuid4())
        db.execute("insert into metric_notes (body) values (%s)", (body,))
        got = [f for f in frames(wire, 3.0) if f["event"] == "postgres_changes"]
        assert got and got[0]["payload"]["data"]["record"]["body"] == body
    finally:
        wire.close()
    time.sleep(1.0)  # the $disconnect handler's document
    docs = emf(capsys.readouterr().out)

    assert all(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ripple" for doc in docs)
    assert sum(values(docs, "connect", "ConnectionsOpened")) >= 1
    assert sum(values(docs, "connect", "ConnectionsRefused")) >= 1
    assert sum(values(docs, "router", "Messages", event="phx_join")) >= 1
    assert sum(values(docs, "router", "Joins")) >= 1
    assert sum(values(docs, "router", "Refusals", event="no_such_event", code="UnknownEvent")) == 1
    assert sum(values(docs, "fanout", "Changes")) >= 1
    assert sum(values(docs, "fanout", "Deliveries")) >= 1
    assert sum(values(docs, "fanout", "Posts")) >= 1
    lags = values(docs, "fanout", "DeliveryLag")
    assert lags and all(0 <= lag < 60_000 for lag in lags)
    assert values(docs, "fanout", "BatchSize") and values(docs, "fanout", "AuthorizeTime")
    assert sum(values(docs, "disconnect", "ConnectionsClosed")) >= 1


def test_notification_deliveries_are_counted_by_status(stack, db, capsys):
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email) values (%s, 'member', 'M', %s)",
               (user, f"{user}@metrics.test"))
    capsys.readouterr()
    note = db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
                      "values (%s, 'news', 'Metrics', 'hi', '{email}') returning id", (user,)).fetchone()[0]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not db.execute(
            "select 1 from notification_deliveries where notification_id = %s and status = 'sent'", (note,)).fetchone():
        time.sleep(0.2)
    time.sleep(0.5)
    docs = emf(capsys.readouterr().out)
    assert sum(values(docs, "notify", "NotificationDeliveries", status="sent")) >= 1
    assert sum(values(docs, "notify", "Notifications")) >= 1
