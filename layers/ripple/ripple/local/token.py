"""`make token SUB=<uuid> [ROLE=authenticated] [CLAIMS='{"organization_id": "…"}']`: a signed
user JWT for the local stack's dev secret, as Supabase Auth would issue for a signed-in user.

    python -m ripple.local.token --sub 5f1c6b1e-8f7a-4a43-9d51-3c2a7e0b9d10
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

import jwt as pyjwt

from ripple.auth.jwt import KNOWN_ROLES

DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


def user_token(sub: str | None, role: str = "authenticated", *, extra: dict[str, Any] | None = None,
               ttl_seconds: int = 3600, secret: str = DEV_JWT_SECRET, now: float | None = None) -> str:
    """An HS256 JWT with `sub`, `role`, `aud`, `iat` and `exp` (plus `extra` claims)."""
    if role not in KNOWN_ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(KNOWN_ROLES))}, not {role!r}")
    if sub is not None:
        uuid.UUID(sub)  # auth.uid() casts sub to uuid: anything else breaks every policy using it
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iss": "ripple-local", "aud": "authenticated" if role == "authenticated" else role,
                              "role": role, "iat": issued, "exp": issued + ttl_seconds, **(extra or {})}
    if sub is not None:
        claims["sub"] = sub
    return pyjwt.encode(claims, secret, algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make token", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sub", default=None, help="the user's id (a uuid); auth.uid() returns it")
    parser.add_argument("--role", default="authenticated")
    parser.add_argument("--claims", default="", help="more claims, as a JSON object")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    args = parser.parse_args(argv)
    try:
        extra = json.loads(args.claims) if args.claims.strip() else {}
        if not isinstance(extra, dict):
            raise ValueError("--claims must be a JSON object")
        if args.role == "authenticated" and not args.sub:
            raise ValueError("an authenticated token needs SUB=<uuid> (the user's id)")
        print(user_token(args.sub or None, args.role, extra=extra, ttl_seconds=args.ttl,
                         secret=os.environ.get("RIPPLE_JWT_SECRET") or DEV_JWT_SECRET))
    except ValueError as error:
        print(f"make token: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
