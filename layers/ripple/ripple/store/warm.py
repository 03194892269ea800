"""Bindings kept warm between batches, each bucket checked against its version before use.

Every write to a bucket's binding rows (a join, a leave, a token refresh, a departed connection)
bumps that bucket's version item after the rows are written; a reader reads the versions of
the buckets it needs (one strongly consistent BatchGetItem), takes the buckets whose version
is unchanged from here, and Queries only the others. A version read before its Query can only
make a warm entry look older than its rows, never newer, so a binding stored before the join
reply is in every batch drained after it. Rows that DynamoDB's TTL removes bump nothing: an entry
is also re-read once it is `max_age` seconds old. A version is an opaque random value ("" for a
bucket that has none), compared for equality only.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ripple.store.bindings import Binding

VERSION_SK = "~v"


@dataclass(frozen=True)
class Bucket:
    """One bucket's bindings (and, for a table bucket, its eq-indexed columns) at a version."""

    version: str
    bindings: list[Binding]
    columns: set[str] | None
    read_at: float


@dataclass
class WarmBuckets:
    """The most recently used buckets, at most `capacity` of them."""

    max_age: float = 60.0
    capacity: int = 4096
    _entries: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)

    def get(self, bucket: str, version: str, now: float | None = None) -> Bucket | None:
        """The entry if it is at `version` and young enough, else None."""
        entry = self._entries.get(bucket)
        if entry is None or entry.version != version:
            return None
        if (time.monotonic() if now is None else now) - entry.read_at > self.max_age:
            return None
        self._entries.move_to_end(bucket)
        return entry

    def put(self, bucket: str, entry: Bucket) -> None:
        self._entries[bucket] = entry
        self._entries.move_to_end(bucket)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
