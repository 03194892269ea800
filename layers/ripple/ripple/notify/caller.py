"""Who calls the notifications REST API, and a transaction that acts as them.

Inbox statements run as the caller (``role`` and ``request.jwt.claims`` set for the
transaction), so the database's row-level security decides what a user sees or changes::

    claims = user(event)                 # ApiError 401/403 unless a signed-in user's JWT
    rows = as_caller(claims.raw, lambda run: run("select id from public.notifications"))
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from ripple import codec
from ripple.auth.jwt import AuthError, Claims, verify
from ripple.db import database
from ripple.events import HttpEvent
from ripple.notify.exceptions import ApiError

ACT_AS = """
select set_config('role', %(role)s, true), set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.jwt.claim.sub', %(sub)s, true),
       set_config('request.jwt.claim.role', %(role)s, true)
"""
SERVICE = {"role": "service_role"}
T = TypeVar("T")
Run = Callable[..., list]


def caller(event: HttpEvent) -> Claims:
    """The claims of the request's valid JWT, unless it is the anon key; ApiError 401 otherwise."""
    try:
        claims = verify(event.bearer())
    except AuthError as exc:
        raise ApiError(401, f"Unauthorized: {exc}") from None
    if claims.role == "anon":
        raise ApiError(401, "Unauthorized: notifications are per user; sign in, the anon key "
                            "is not enough")
    return claims


def user_id(claims: Claims) -> UUID:
    """The user the claims name; ApiError 401 when ``sub`` is not a UUID."""
    try:
        return UUID(claims.sub or "")
    except ValueError:
        raise ApiError(401, "Unauthorized: the JWT names no user (sub is not a UUID)") from None


def user(event: HttpEvent) -> Claims:
    """The claims of a signed-in user: the inbox routes act for one."""
    claims = caller(event)
    if claims.role != "authenticated":
        raise ApiError(403, "Forbidden: the inbox belongs to a user; call it with the user's JWT, "
                            "not the service_role key")
    user_id(claims)
    return claims


def as_caller(claims: dict[str, Any], work: Callable[[Run], T]) -> T:
    """``work(run)`` in a transaction whose statements run as ``claims["role"]``, RLS and all;
    ``run(sql, params)`` returns rows. Run once more on a new connection if the first turns out
    dead (a failover, a restart): it rolled back, so nothing of the first try remains."""
    db = database()

    def unit(conn: Any) -> T:
        db.execute(conn, ACT_AS, {"role": claims["role"], "claims": codec.dumps(claims),
                                  "sub": str(claims.get("sub") or "")})
        return work(lambda sql, params=None: db.execute(conn, sql, params))

    return db.unit(unit)
