"""The handlers' EMF documents: the same documents Powertools' EphemeralMetrics prints, within
CloudWatch's limits of 100 metrics and 100 values per metric in one document."""
from __future__ import annotations

import json

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from ripple.observability import NAMESPACE, Invocation, lambda_handler, metric


def powertools(function: str, recorded: list[tuple[str, float, MetricUnit, dict[str, str]]],
               capsys) -> list[dict]:
    """What EphemeralMetrics prints for the same values, one instance per dimension set."""
    sets: dict = {}
    for name, value, unit, dimensions in recorded:
        key = tuple(sorted(dimensions.items()))
        if key not in sets:
            sets[key] = EphemeralMetrics(namespace=NAMESPACE, service="ripple")
            sets[key].add_dimension("function", function)
            for k, v in key:
                sets[key].add_dimension(k, v)
        sets[key].add_metric(name=name, unit=unit, value=value)
    capsys.readouterr()
    for m in sets.values():
        m.flush_metrics()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_documents_are_powertools_own(capsys) -> None:
    recorded = [("Batches", 1, MetricUnit.Count, {}), ("Deliveries", 10, MetricUnit.Count, {}),
                ("DeliveryLag", 3.25, MetricUnit.Milliseconds, {}), ("DeliveryLag", 4.5, MetricUnit.Milliseconds, {}),
                ("Refusals", 1, MetricUnit.Count, {"event": "phx_join", "code": "InvalidJWTToken"}),
                ("Messages", 1, MetricUnit.Count, {"event": "heartbeat"})]
    invocation = Invocation("fanout")
    for name, value, unit, dimensions in recorded:
        invocation.add(name, value, unit, dimensions)
    theirs = powertools("fanout", recorded, capsys)
    stamp = theirs[0]["_aws"]["Timestamp"]
    ours = invocation.documents(now_ms=stamp)
    for doc in theirs:
        doc["_aws"]["Timestamp"] = stamp
    assert ours == theirs
    # The same order of keys as well: the printed lines are byte for byte Powertools'.
    assert [json.dumps(d) for d in ours] == [json.dumps(d) for d in theirs]


def test_no_document_holds_more_than_a_hundred_values_of_one_metric() -> None:
    invocation = Invocation("fanout")
    for lag in range(250):
        invocation.add("DeliveryLag", lag, MetricUnit.Milliseconds, {})
    invocation.add("Batches", 250, MetricUnit.Count, {})
    docs = invocation.documents()
    assert [len(d["DeliveryLag"]) for d in docs] == [100, 100, 50]
    assert [v for d in docs for v in d["DeliveryLag"]] == [float(v) for v in range(250)]
    assert [d.get("Batches") for d in docs] == [[250.0], None, None]
    for doc in docs:
        declared = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        assert declared == [n for n in ("DeliveryLag", "Batches") if n in doc]


def test_a_handler_prints_its_metrics_once_and_nothing_when_disabled(capsys, monkeypatch) -> None:
    @lambda_handler("router")
    def handler(event, context):
        metric("Messages", event="phx_join")
        metric("Messages", event="phx_join")
        return {}

    handler({}, None)
    lines = capsys.readouterr().out.splitlines()
    docs = [json.loads(line) for line in lines]
    joined = [d for d in docs if d.get("event") == "phx_join"]
    assert len(joined) == 1 and joined[0]["Messages"] == [1.0, 1.0]
    assert joined[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["function", "event", "service"]]
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    handler({}, None)
    assert capsys.readouterr().out == ""
