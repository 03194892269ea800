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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from ripple.log import logger

NAMESPACE = "Ripple"
# botocore only: Postgres statements get explicit subsegments, and patching psycopg would wrap
# every connection in a proxy.
tracer = Tracer(service="ripple", patch_modules=["botocore"])

Handler = Callable[[Any, Any], Any]


@dataclass
class Invocation:
    """The metrics of one handler invocation, one EMF document per distinct dimension set."""

    function: str
    sets: dict[tuple[tuple[str, str], ...], EphemeralMetrics] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: MetricUnit, dimensions: dict[str, str]) -> None:
        key = tuple(sorted(dimensions.items()))
        metrics = self.sets.get(key)
        if metrics is None:
            metrics = self.sets[key] = EphemeralMetrics(namespace=NAMESPACE, service="ripple")
            metrics.add_dimension("function", self.function)
            for dimension, dimension_value in key:
                metrics.add_dimension(dimension, dimension_value)
        metrics.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        for metrics in self.sets.values():
            metrics.flush_metrics()
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
