"""Replay of postgres_changes: `config.broadcast.replay_changes: {after | since, limit}` replays
the channel's logged changes before live ones, through the live path: each is matched against
the channel's bindings (event and filter) and authorized in one batched realtime.authorize with
the subscriber's current claims on the stored row image (DELETE included), then encoded as the
live push, `errors` leading with "position:<n>".

Runs inside a `channels.window.Window`: the replay reads the log up to the last position acked
before the window, and every later change is drained after it, to the bindings stored inside
it, so the boundary has no gap and no duplicate.
"""
from __future__ import annotations

import time

from ripple import codec
from ripple.changes.change import Change
from ripple.changes.plan import plan
from ripple.changes.subscription import Subscription
from ripple.channels.window import Window, truncated_notice
from ripple.gateway import ConnectionsApi
from ripple.protocol.join import ChangesReplayOptions
from ripple.protocol.serializer import encode
from ripple.store import Member, MemoryStore

REPLAY = "select * from realtime.replay_changes(%s::jsonb, %s, %s, %s, %s)"
AUTHORIZE = "select * from realtime.authorize(%s::jsonb)"


def replay(window: Window, api: ConnectionsApi, sub: Subscription | None, member: Member,
           options: ChangesReplayOptions) -> int:
    """Post the channel's missed changes that its bindings match and its claims may read, in
    log order, then the truncation notice if the limit left some out; returns how many frames
    were posted or owed."""
    frames = []
    if window.expired(options.after, options.since):
        frames.append(encode(window.expired_notice(member, "postgres_changes"), member.vsn))
    if sub is not None and sub.bindings:
        tables = codec.dumps([{"schema": b.schema, "table": b.table} for b in sub.bindings])
        rows = window.execute(REPLAY, (tables, options.after, options.since,
                                       window.horizon["last_position"], options.limit))
        # The channel's own bindings, alone, so the planner matches nothing else: every frame
        # planned is the member's connection's.
        mine = MemoryStore()
        mine.add_bindings(sub.bindings, sub.indexed, int(time.time()) + 60)
        planned = plan([Change.from_outbox(r) for r in rows], mine,
                       lambda request: window.execute(AUTHORIZE, (codec.dumps(request),)))
        frames.extend(frame for change in planned.frames for _, frame in change)
        left = int(rows[0]["total"]) - len(rows) if rows else 0
        if left > 0:
            frames.append(encode(truncated_notice(member, "postgres_changes", left, rows[-1]["position"]),
                                 member.vsn))
    window.post(api, member.connection_id, frames)
    return len(frames)
