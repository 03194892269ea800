"""A poster process: `python -m ripple.shards.worker`, started by `ProcessTransport`.

It reads one shard per line on stdin (`ripple.shards.wire`'s JSON), posts it with a
ConnectionsApi of its own (its own poster, event loop and keep-alive pool, from the inherited
environment) and answers one outcome per line on the pipe it was given as stdout. A shard it
could not post answers `{"error": ...}`, which the drainer reads as a failed shard.

It never outlives the drainer (its pid is the one argument): end of input (the drainer closed
the pipe or exited) ends it, and a watch on its parent ends it mid-shard if the drainer was
killed outright.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import BinaryIO

from ripple import codec
from ripple.gateway import ConnectionsApi
from ripple.log import logger
from ripple.shards.wire import post_shard

# How often the parent watch looks; an orphan posts at most this much longer.
PARENT_WATCH_SECONDS = 0.25


def watch_parent(parent: int) -> threading.Thread:
    """A daemon thread that ends this process as soon as its parent is no longer `parent`
    (killed: the process was handed to init or a subreaper)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_SECONDS)
        os._exit(0)

    thread = threading.Thread(target=watch, name="ripple-parent-watch", daemon=True)
    thread.start()
    return thread


def answers() -> BinaryIO:
    """The pipe to answer on. Everything else this process prints (logs, warnings) goes to
    stderr, so nothing but outcomes ever reaches the drainer's pipe."""
    pipe = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return pipe


def serve(api: ConnectionsApi, shards: BinaryIO, out: BinaryIO) -> None:
    """Answer every shard line of `shards` until end of input."""
    for line in shards:
        try:
            answer = post_shard(api, codec.loads(line))
        except Exception as exc:  # noqa: BLE001 - any failure is this shard's answer, not the end of the poster
            logger.exception("shard not posted")
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            # Owed frames went back in the answer; the drainer keeps them, not this poster.
            api.take_owing()
        out.write(codec.dumps(answer).encode() + b"\n")
        out.flush()


def main() -> None:
    watch_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    out = answers()
    api = ConnectionsApi.from_settings()
    # Owed frames are held per connection within a shard, as in the drainer, then handed back.
    api.keep_owed = True
    serve(api, sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
