"""Verify the JWTs clients present on connect (`apikey`) and per channel (`access_token`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt as pyjwt

from ripple.config import settings

KNOWN_ROLES = frozenset({"anon", "authenticated", "service_role"})


class AuthError(Exception):
    """A token that must be refused; str() is safe to show the client (never the token)."""


@dataclass(frozen=True)
class Claims:
    """The verified claims of one token."""

    role: str
    exp: int
    raw: dict[str, Any]

    @property
    def sub(self) -> str | None:
        sub = self.raw.get("sub")
        return sub if isinstance(sub, str) else None


@lru_cache(maxsize=1)
def _secret() -> str:
    config = settings()
    if config.jwt_secret:
        return config.jwt_secret
    if config.jwt_secret_arn:
        from ripple.aws import clients

        return clients().secretsmanager.get_secret_value(SecretId=config.jwt_secret_arn)["SecretString"]
    raise RuntimeError("no JWT secret configured: set RIPPLE_JWT_SECRET or RIPPLE_JWT_SECRET_ARN")


def verify(token: str | None) -> Claims:
    """The claims of an HS256 token signed with the configured secret, carrying `role` and `exp`."""
    if not token:
        raise AuthError("missing JWT")
    try:
        header = pyjwt.get_unverified_header(token)
    except pyjwt.PyJWTError:
        raise AuthError("malformed JWT") from None
    if header.get("alg") != "HS256":
        raise AuthError(f"unsupported JWT algorithm {header.get('alg')!r}")
    try:
        raw = pyjwt.decode(token, _secret(), algorithms=["HS256"],
                           options={"require": ["exp"], "verify_aud": False})
    except pyjwt.ExpiredSignatureError:
        raise AuthError("Token has expired") from None
    except pyjwt.InvalidSignatureError:
        raise AuthError("invalid JWT signature") from None
    except pyjwt.PyJWTError as exc:
        raise AuthError(f"invalid JWT: {exc}") from None
    role = raw.get("role")
    if not isinstance(role, str) or not role:
        raise AuthError("JWT has no role claim")
    if role not in KNOWN_ROLES:
        raise AuthError(f"unknown role {role!r}")
    return Claims(role=role, exp=int(raw["exp"]), raw=raw)
