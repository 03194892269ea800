"""Verify the JWTs clients present on connect (`apikey`) and per channel (`access_token`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt as pyjwt

from ripple import codec
from ripple.config import settings

KNOWN_ROLES = frozenset({"anon", "authenticated", "service_role"})
ASYMMETRIC = ("RS256", "ES256")


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


def _secret() -> str:
    """The HS256 secret: RIPPLE_JWT_SECRET, or the secret at RIPPLE_JWT_SECRET_ARN (re-read once
    it is `secret_max_age_seconds` old, so a rotation reaches warm containers)."""
    config = settings()
    if config.jwt_secret:
        return config.jwt_secret
    if config.jwt_secret_arn:
        from ripple.aws import secret

        return secret(config.jwt_secret_arn, max_age=config.secret_max_age_seconds)
    raise RuntimeError("no JWT secret configured: set RIPPLE_JWT_SECRET or RIPPLE_JWT_SECRET_ARN")


@lru_cache(maxsize=1)
def _jwks() -> pyjwt.PyJWKClient | None:
    config = settings()
    if not config.jwks_url:
        return None
    # Keys are cached for jwks_cache_seconds; an unknown `kid` refetches (rate-limited by PyJWT).
    return pyjwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=config.jwks_cache_seconds,
                             timeout=5)


def _key(token: str, alg: str) -> Any:
    if alg == "HS256":
        return _secret()
    if alg in ASYMMETRIC:
        jwks = _jwks()
        if jwks is None:
            raise AuthError(f"{alg} tokens need RIPPLE_JWKS_URL")
        try:
            return jwks.get_signing_key_from_jwt(token).key
        except pyjwt.PyJWKClientConnectionError:
            raise AuthError("signing keys are unavailable") from None
        except pyjwt.PyJWTError:
            raise AuthError("no signing key matches the JWT's kid") from None
    raise AuthError(f"unsupported JWT algorithm {alg!r}")


# PyJWT's refusals, in the words the client is told.
REFUSALS: tuple[tuple[type[pyjwt.PyJWTError], str], ...] = (
    (pyjwt.ExpiredSignatureError, "Token has expired"),
    (pyjwt.InvalidSignatureError, "invalid JWT signature"),
    (pyjwt.InvalidAudienceError, "JWT audience is not accepted"),
    (pyjwt.InvalidIssuerError, "JWT issuer is not accepted"),
)


def _decode(token: str, key: Any, alg: str) -> dict[str, Any]:
    """The verified payload: signature, `exp`, and the accepted `aud`/`iss` when configured."""
    config = settings()
    audiences, issuers = config.jwt_audiences, config.jwt_issuers
    try:
        return pyjwt.decode(token, key, algorithms=[alg], audience=audiences, issuer=issuers,
                            options={"require": ["exp"], "verify_aud": audiences is not None})
    except pyjwt.MissingRequiredClaimError as exc:
        raise AuthError(f"JWT has no {exc.claim} claim") from None
    except pyjwt.PyJWTError as exc:
        reason = next((text for kind, text in REFUSALS if isinstance(exc, kind)), f"invalid JWT: {exc}")
        raise AuthError(reason) from None
    except (TypeError, ValueError, KeyError, AttributeError):
        # A key of another family than the header's alg (an ES256 header naming an RSA kid).
        raise AuthError("invalid JWT: the key does not fit the algorithm") from None


def verify(token: str | None) -> Claims:
    """The claims of a valid token carrying `role` and `exp`.

    HS256 tokens are checked against the configured secret, RS256/ES256 tokens against the JWKS
    at RIPPLE_JWKS_URL; `alg: none` and every other algorithm are refused. With
    RIPPLE_JWT_AUDIENCE / RIPPLE_JWT_ISSUER set, `aud` must name one of the accepted audiences
    and `iss` must be one of the accepted issuers.
    """
    if not token or not isinstance(token, str):
        raise AuthError("missing JWT")
    try:
        header = pyjwt.get_unverified_header(token)
    except pyjwt.PyJWTError:
        raise AuthError("malformed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise AuthError("malformed JWT")
    raw = _decode(token, _key(token, alg), alg)
    _check_claims(raw)
    role = raw.get("role")
    if not isinstance(role, str) or not role:
        raise AuthError("JWT has no role claim")
    if role not in KNOWN_ROLES:
        raise AuthError(f"unknown role {role!r}")
    return Claims(role=role, exp=int(raw["exp"]), raw=raw)


# Claims are stored (DynamoDB numbers: 38 digits) and handed to Postgres (jsonb: no NUL).
MAX_EXP = 2**53


def _check_claims(raw: dict[str, Any]) -> None:
    exp = raw.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not 0 < exp < MAX_EXP:
        raise AuthError("invalid JWT: exp out of range")
    try:
        text = codec.dumps(raw)
    except (TypeError, ValueError):
        raise AuthError("invalid JWT: claims are not plain JSON") from None
    # The codec writes NUL as the escape \u0000, which Postgres refuses in jsonb.
    if "\\u0000" in text:
        raise AuthError("invalid JWT: claims cannot hold NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AuthError("invalid JWT: claims hold a lone UTF-16 surrogate") from None
