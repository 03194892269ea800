"""`$connect` and `$disconnect`: who may open a socket, and what is forgotten when it closes."""
from __future__ import annotations

import time

from ripple import codec
from ripple.auth.jwt import AuthError, verify
from ripple.channels.lifecycle import depart
from ripple.config import settings
from ripple.events import ConnectEvent, DisconnectEvent, response
from ripple.gateway import connections_api
from ripple.log import logger
from ripple.metrics import record_connection, record_disconnect
from ripple.protocol.serializer import FrameError, negotiate
from ripple.store import Connection, store


def on_connect(event: ConnectEvent) -> dict:
    """200 and a connection row for a valid `apikey` JWT; 401 (no row) otherwise."""
    try:
        # Refused here if unknown; each frame's own shape tells its serializer afterwards.
        negotiate(event.query("vsn"))
    except FrameError as exc:
        return response(400, codec.dumps({"message": str(exc)}))
    token = event.query("apikey") or event.header("apikey")
    try:
        claims = verify(token)
    except AuthError as exc:
        logger.info("connection refused", extra={"reason": str(exc)})
        record_connection(401)
        return response(401, codec.dumps({"message": f"Unauthorized: {exc}"}))
    now = int(time.time())
    store().put_connection(Connection(
        connection_id=event.connection_id, role=claims.role, claims=codec.dumps(claims.raw),
        connected_at=event.connected_at_ms,
        expires_at=now + settings().connection_ttl_seconds, last_seen=now))
    record_connection(200)
    return response(200)


def on_disconnect(event: DisconnectEvent) -> dict:
    """Remove the connection, its bindings and memberships, and announce its presence leaves.

    API Gateway only promises best effort here; TTLs and 410s on later posts back it up.
    """
    depart(store(), connections_api(), event.connection_id)
    record_disconnect()
    return response(200)
