"""RIPPLE_JWT_AUDIENCE and RIPPLE_JWT_ISSUER: unset accepts any `aud`/`iss`; set, every token must match."""
from __future__ import annotations

import time

import jwt
import pytest

from ripple.auth.jwt import AuthError, verify
from tests.unit.auth.test_jwt import RSA_KEY, SECRET, _clear, claims, configured, jwks_url  # noqa: F401

COGNITO_ISS = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
COGNITO_CLIENT = "4k1q2p3r5s6t7u8v9w0x1y2z3a"
AUTH0_ISS = "https://acme.eu.auth0.com/"
AUTH0_API = "https://api.acme.com"
SUPABASE_ISS = "https://abcdefghijklmnop.supabase.co/auth/v1"


@pytest.fixture
def accept(monkeypatch):
    """Set the accepted audience and issuer (None leaves one unset), as the environment would."""
    def set_(audience: str | None = None, issuer: str | None = None) -> None:
        for name, value in (("RIPPLE_JWT_AUDIENCE", audience), ("RIPPLE_JWT_ISSUER", issuer)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        _clear()
    return set_


def hs(**over) -> str:
    return jwt.encode(claims(**over), SECRET, algorithm="HS256")


def rs(**over) -> str:
    return jwt.encode(claims(**over), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})


def refused(token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verify(token)
    return str(caught.value)


def test_unset_accepts_any_audience_and_issuer(accept):
    accept()
    assert verify(hs(aud="someone-else", iss="https://anywhere.example")).role == "authenticated"
    assert verify(hs()).role == "authenticated"  # and none at all


def test_empty_settings_are_unset(accept):
    # CloudFormation passes an optional parameter left blank as an empty string.
    accept(audience="", issuer="")
    assert verify(hs(aud="x", iss="y")).role == "authenticated"


def test_audience_must_match_when_set(accept):
    accept(audience="authenticated")
    assert verify(hs(aud="authenticated")).raw["aud"] == "authenticated"
    assert verify(hs(aud=["https://acme.eu.auth0.com/userinfo", "authenticated"])).role == "authenticated"
    assert refused(hs(aud="anon-app")) == "JWT audience is not accepted"
    assert refused(hs(aud=["a", "b"])) == "JWT audience is not accepted"
    assert refused(hs()) == "JWT has no aud claim"


def test_issuer_must_match_when_set(accept):
    accept(issuer=SUPABASE_ISS)
    assert verify(hs(iss=SUPABASE_ISS)).role == "authenticated"
    assert refused(hs(iss="https://other.supabase.co/auth/v1")) == "JWT issuer is not accepted"
    assert refused(hs(iss=SUPABASE_ISS + "/")) == "JWT issuer is not accepted"  # exact, not a prefix
    assert refused(hs()) == "JWT has no iss claim"


def test_several_accepted_values_are_comma_separated(accept):
    accept(audience="app-web, app-mobile", issuer=f"supabase,{SUPABASE_ISS}")
    assert verify(hs(aud="app-mobile", iss="supabase")).role == "authenticated"
    assert verify(hs(aud="app-web", iss=SUPABASE_ISS)).role == "authenticated"
    assert refused(hs(aud="app-tv", iss="supabase")) == "JWT audience is not accepted"
    assert refused(hs(aud="app-web", iss="supabase-staging")) == "JWT issuer is not accepted"


def test_both_are_checked_for_jwks_tokens_too(accept):
    accept(audience=COGNITO_CLIENT, issuer=COGNITO_ISS)
    assert verify(rs(aud=COGNITO_CLIENT, iss=COGNITO_ISS)).role == "authenticated"
    assert refused(rs(aud="another-app-client", iss=COGNITO_ISS)) == "JWT audience is not accepted"
    assert refused(rs(aud=COGNITO_CLIENT, iss=COGNITO_ISS.replace("AbCdEf123", "Stranger99"))) == \
        "JWT issuer is not accepted"


@pytest.mark.parametrize("audience,issuer,token", [
    # Cognito ID token: aud is the app client id; access tokens carry client_id and no aud.
    (COGNITO_CLIENT, COGNITO_ISS, dict(aud=COGNITO_CLIENT, iss=COGNITO_ISS, token_use="id")),
    (None, COGNITO_ISS, dict(client_id=COGNITO_CLIENT, iss=COGNITO_ISS, token_use="access")),
    # Auth0 access token for an API, with the userinfo audience alongside.
    (AUTH0_API, AUTH0_ISS, dict(aud=[AUTH0_API, "https://acme.eu.auth0.com/userinfo"], iss=AUTH0_ISS)),
    # Supabase Auth: signed-in users have aud "authenticated".
    ("authenticated", SUPABASE_ISS, dict(aud="authenticated", iss=SUPABASE_ISS)),
])
def test_the_documented_provider_settings(accept, audience, issuer, token):
    accept(audience=audience, issuer=issuer)
    assert verify(rs(**token)).role == "authenticated"
    assert refused(rs(**{**token, "iss": "https://evil.example/"})) == "JWT issuer is not accepted"
    if audience is not None:
        assert refused(rs(**{**token, "aud": "something-else"})) == "JWT audience is not accepted"


def test_expiry_and_signature_still_come_first(accept):
    accept(audience="authenticated", issuer=SUPABASE_ISS)
    assert refused(hs(aud="authenticated", iss=SUPABASE_ISS, exp=int(time.time()) - 5)) == "Token has expired"
    forged = jwt.encode(claims(aud="authenticated", iss=SUPABASE_ISS), "x" * 40, algorithm="HS256")
    assert refused(forged) == "invalid JWT signature"
