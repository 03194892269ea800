"""Sharded posting through worker processes on this machine (or this Lambda container).

Each worker is `python -m ripple.shards.worker` started with `subprocess.Popen`, spoken to over
its stdin/stdout pipes, one JSON line per shard and per outcome. Pipes and a fresh interpreter
rather than `multiprocessing`: Lambda has no /dev/shm (so no multiprocessing Queue or Pool), and
an exec'd child inherits none of the drainer's threads, event loop or database connections the
way a forked one would.

Workers start on first use and stay warm across rounds (and across invocations of a reused
container). A worker that dies, answers nonsense or misses the round's deadline fails the round
(`ShardFailed`), is killed, and is replaced on the next round.
"""
from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ripple
from ripple import codec
from ripple.gateway import Delivery, Outcome
from ripple.log import logger
from ripple.shards.wire import ShardFailed, outcome_from, shard_payload

WORKER_MODULE = "ripple.shards.worker"


@dataclass
class _Exchange:
    """One worker's part of a round: the shard line still to write, the answer read so far."""

    process: subprocess.Popen
    pending: bytes
    received: bytearray = field(default_factory=bytearray)
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.received.endswith(b"\n")

    @property
    def done(self) -> bool:
        return self.answered or self.error is not None


class ProcessTransport:
    """Posts each shard of a round on a worker process of its own, in parallel; at most
    `shards` shards per round. `pids` are the live workers, `started` counts every worker ever
    started (replacements included), `rounds` the rounds posted."""

    def __init__(self, shards: int):
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.shards = shards
        self.started = 0
        self.rounds = 0
        self._workers: list[subprocess.Popen | None] = [None] * shards
        # One round at a time: a worker's pipe carries one shard and one answer in turn.
        self._lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w is not None and w.poll() is None]

    def post(self, shards: list[list[Delivery]], timeout: float) -> list[tuple[Outcome, int]]:
        """One (Outcome, posts) per shard, in order; ShardFailed if any worker did not answer
        within `timeout` seconds (the others are still waited for, so they stay in step)."""
        if len(shards) > self.shards:
            raise ValueError(f"{len(shards)} shards for {self.shards} workers")
        with self._lock:
            self.rounds += 1
            exchanges = [_Exchange(self._worker(index), codec.dumps(shard_payload(shard)).encode() + b"\n")
                         for index, shard in enumerate(shards)]
            _run(exchanges, time.monotonic() + timeout)
            return self._settle(exchanges)

    def warm(self) -> ProcessTransport:
        """Start every worker now (a container's start pays for them, not its first wide round);
        returns the transport."""
        with self._lock:
            for index in range(self.shards):
                self._worker(index)
        return self

    def close(self) -> None:
        """Stop every worker: end of input, then a kill for any that lingers."""
        with self._lock:
            for index, worker in enumerate(self._workers):
                if worker is not None:
                    _stop(worker)
                    self._workers[index] = None

    def _worker(self, index: int) -> subprocess.Popen:
        worker = self._workers[index]
        if worker is None or worker.poll() is not None:
            if worker is not None:
                _kill(worker)  # died between rounds: its pipes are closed before it is replaced
            try:
                worker = self._workers[index] = _spawn()
            except OSError as exc:  # out of processes, memory or file descriptors
                raise ShardFailed(f"shard {index}: no poster process could start: {exc}") from exc
            self.started += 1
        return worker

    def _settle(self, exchanges: list[_Exchange]) -> list[tuple[Outcome, int]]:
        results: list[tuple[Outcome, int]] = []
        errors: list[str] = []
        for index, exchange in enumerate(exchanges):
            try:
                if exchange.error is not None:
                    raise ShardFailed(exchange.error)
                results.append(outcome_from(codec.loads(bytes(exchange.received))))
            except (ShardFailed, ValueError) as exc:
                errors.append(f"shard {index} (pid {exchange.process.pid}): {exc}")
                if exchange.error is not None or not isinstance(exc, ShardFailed):
                    # Out of step or gone: replaced next round. A worker that answered an error
                    # for its shard is in step and stays.
                    _kill(exchange.process)
                    self._workers[index] = None
        if errors:
            logger.warning("shards failed", extra={"errors": errors})
            raise ShardFailed("; ".join(errors))
        return results


def _spawn() -> subprocess.Popen:
    """A worker process, with this process's environment and its `ripple` on the path."""
    env = dict(os.environ)
    here = str(Path(ripple.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
    assert process.stdin is not None and process.stdout is not None
    os.set_blocking(process.stdin.fileno(), False)
    os.set_blocking(process.stdout.fileno(), False)
    return process


def _run(exchanges: list[_Exchange], deadline: float) -> None:
    """Write every shard and read every answer, all workers at once, until each has answered,
    failed, or the deadline passed."""
    with selectors.DefaultSelector() as selector:
        for exchange in exchanges:
            assert exchange.process.stdin is not None and exchange.process.stdout is not None
            selector.register(exchange.process.stdout, selectors.EVENT_READ, exchange)
            _write(exchange)
            if exchange.pending and exchange.error is None:
                selector.register(exchange.process.stdin, selectors.EVENT_WRITE, exchange)
        while not all(e.done for e in exchanges) and (left := deadline - time.monotonic()) > 0:
            for key, events in selector.select(timeout=left):
                _step(selector, key, events)
    for exchange in exchanges:
        if not exchange.done:
            exchange.error = "no answer before the deadline"


def _step(selector: selectors.BaseSelector, key: selectors.SelectorKey, events: int) -> None:
    """Write more of a shard or read more of an answer; a pipe that is done leaves the selector."""
    exchange: _Exchange = key.data
    if events & selectors.EVENT_WRITE:
        _write(exchange)
        finished = not exchange.pending or exchange.error is not None
    else:
        _read(exchange)
        finished = exchange.done
    if finished:
        selector.unregister(key.fileobj)


def _write(exchange: _Exchange) -> None:
    assert exchange.process.stdin is not None
    try:
        sent = os.write(exchange.process.stdin.fileno(), exchange.pending)
    except BlockingIOError:
        return
    except OSError as exc:
        exchange.error = f"its pipe closed ({type(exc).__name__}); exit code {exchange.process.poll()}"
        return
    exchange.pending = exchange.pending[sent:]


def _read(exchange: _Exchange) -> None:
    assert exchange.process.stdout is not None
    try:
        chunk = os.read(exchange.process.stdout.fileno(), 1 << 16)
    except BlockingIOError:
        return
    if not chunk:
        try:
            code: int | None = exchange.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            code = None
        exchange.error = f"closed its pipe (exit code {code})"
        return
    exchange.received += chunk
    end = chunk.find(b"\n")
    if end != -1 and end != len(chunk) - 1:
        exchange.error = "answered more than one line"


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def _stop(process: subprocess.Popen) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    _kill(process)
