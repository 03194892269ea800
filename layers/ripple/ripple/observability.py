"""What each Lambda invocation tells operators: logs, traces and metrics, with Powertools.

`lambda_handler(name)` wraps every handler. The Logger carries the Lambda context (request id,
cold start); the Tracer opens the invocation's X-Ray segment (botocore calls, hence DynamoDB and
`@connections`, become subsegments, and so does each Postgres statement through `subsegment`);
metrics recorded during the invocation with `metric` are printed when it returns as CloudWatch
Embedded Metric Format documents: namespace `Ripple`, dimension `function`, plus the dimensions
a metric names. Locally the same documents go to the stack's stdout.

    @lambda_handler("fanout")
    def handler(event, context):
        return on_wake(WakeEvent.model_validate(event or {}), context)

    metric("Deliveries", 12)
    metric("Refusals", code="InvalidJWTToken")
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from ripple.log import logger

NAMESPACE = "Ripple"
# botocore only: Postgres statements get explicit subsegments, and patching psycopg would wrap
# every connection in a proxy.
tracer = Tracer(service="ripple", patch_modules=["botocore"])

Handler = Callable[[Any, Any], Any]


# CloudWatch takes at most 100 metrics per document, and 100 values per metric.
MAX_METRICS = 100
SERVICE = "ripple"


@dataclass
class Invocation:
    """The metrics of one handler invocation, one EMF document per distinct dimension set.

    The documents are those Powertools' EphemeralMetrics prints (dimensions `function`, the
    metric's own, then `service`; every value in a list; at most 100 metrics and 100 values per
    metric in one document; nothing when POWERTOOLS_METRICS_DISABLED says so), built here from
    plain dicts: the fanout records a dozen values per wake-up, and Powertools' per-value
    validation, formatting and bookkeeping cost more CPU than the drained batch's own planning
    (13 values recorded and flushed: 132 µs of CPU through EphemeralMetrics, 51 µs here).
    """

    function: str
    # dimensions -> metric name -> (unit, values)
    sets: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, list[float]]]] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: MetricUnit, dimensions: dict[str, str]) -> None:
        key = tuple(sorted(dimensions.items())) if dimensions else ()
        metrics = self.sets.get(key)
        if metrics is None:
            metrics = self.sets[key] = {}
        entry = metrics.get(name)
        if entry is None:
            metrics[name] = (unit.value if isinstance(unit, MetricUnit) else str(unit), [float(value)])
        else:
            entry[1].append(float(value))

    def documents(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """The EMF documents of what was recorded."""
        stamp = int(time.time() * 1000) if now_ms is None else now_ms
        docs = []
        for key, metrics in self.sets.items():
            dimensions = {"function": self.function, **dict(key), "service": SERVICE}
            names = list(metrics)
            for start in range(0, len(names), MAX_METRICS):
                chunk = names[start:start + MAX_METRICS]
                longest = max(len(metrics[n][1]) for n in chunk)
                for at in range(0, longest, MAX_METRICS):
                    present = [n for n in chunk if len(metrics[n][1]) > at]
                    docs.append({
                        "_aws": {"Timestamp": stamp, "CloudWatchMetrics": [{
                            "Namespace": NAMESPACE, "Dimensions": [list(dimensions)],
                            "Metrics": [{"Name": n, "Unit": metrics[n][0]} for n in present]}]},
                        **dimensions,
                        **{n: metrics[n][1][at:at + MAX_METRICS] for n in present}})
        return docs

    def flush(self) -> None:
        if self.sets and not is_metrics_disabled():
            for doc in self.documents():
                print(json.dumps(doc, separators=(",", ":")))
        self.sets.clear()


_current: ContextVar[Invocation | None] = ContextVar("ripple_invocation", default=None)
_started: set[str] = set()


def current_function() -> str | None:
    """The function whose invocation is running in this context (None outside a handler)."""
    invocation = _current.get()
    return invocation.function if invocation else None


def metric(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Record one value of `name` for the running invocation; outside a handler (a test or a
    benchmark calling the package directly) nothing is recorded."""
    invocation = _current.get()
    if invocation is not None:
        invocation.add(name, value, unit, {k: str(v) for k, v in dimensions.items()})


@contextmanager
def subsegment(name: str) -> Iterator[None]:
    """An X-Ray subsegment around a block when tracing is on; nothing otherwise (locally)."""
    if tracer.disabled:
        yield
        return
    with tracer.provider.in_subsegment(name):
        yield


def lambda_handler(function: str) -> Callable[[Handler], Handler]:
    """Decorate the handler of `function` (its folder under functions/): Lambda context in every
    log line, an X-Ray segment, and its metrics flushed as EMF when it returns or raises.

    A call without a context (a script invoking the handler directly) still runs, untagged.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def measured(event: Any, context: Any) -> Any:
            invocation = Invocation(function)
            token = _current.set(invocation)
            try:
                if function not in _started:
                    _started.add(function)
                    invocation.add("ColdStart", 1, MetricUnit.Count, {})
                return handler(event, context)
            finally:
                _current.reset(token)
                invocation.flush()

        traced = tracer.capture_lambda_handler(measured, capture_response=False)
        logged = logger.inject_lambda_context(traced, clear_state=True)

        @functools.wraps(handler)
        def invoke(event: Any, context: Any) -> Any:
            return logged(event, context) if context is not None else measured(event, context)

        return invoke

    return decorate
