"""Presence payloads as Phoenix Presence shapes them: `presence_state` and `presence_diff`."""
from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from typing import Any


def new_ref() -> str:
    """A unique `phx_ref` for one tracked meta."""
    return base64.urlsafe_b64encode(os.urandom(9)).decode()


def state(tracked: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`presence_state` from (key, meta) pairs: every key with the metas tracked under it.

    >>> state([("ann", {"phx_ref": "a"}), ("ann", {"phx_ref": "b"})])
    {'ann': {'metas': [{'phx_ref': 'a'}, {'phx_ref': 'b'}]}}
    """
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for key, meta in tracked:
        out.setdefault(key, {"metas": []})["metas"].append(meta)
    return out


def diff(key: str, joins: list[dict], leaves: list[dict]) -> dict[str, dict]:
    """`presence_diff` payload for one key."""
    return {"joins": {key: {"metas": joins}} if joins else {},
            "leaves": {key: {"metas": leaves}} if leaves else {}}
