"""Recording the AWS operations Ripple's clients make, by the function whose invocation made them."""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ripple.aws import Call
from ripple.observability import current_function


class Recorder:
    """An observer for ripple.aws.observe_calls: (function or None, call) in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, Call]] = []

    def __call__(self, call: Call) -> None:
        self.calls.append((current_function(), call))


@contextlib.contextmanager
def worker_threads_keep_context() -> Iterator[None]:
    """Posts run on the ConnectionsApi's worker threads: carry the invocation's context there, as
    one Lambda container would have only its own invocation to attribute them to."""
    submit = ThreadPoolExecutor.submit

    def in_context(self, fn, /, *args, **kwargs):
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = in_context  # type: ignore[method-assign]
    try:
        yield
    finally:
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
