"""Spike 5's authentication logic without a network: tokens, replay guard, limiter, cookies, browser cookie rules."""

from __future__ import annotations

import time

import jwt
import pytest

from spikes.s05_auth import core
from spikes.s05_auth.attacks import redact, tampered_tokens
from spikes.s05_auth.core import AuthError, CookieSpec, FailureLimiter, ReplayGuard, TokenIssuer
from spikes.s05_auth.poc.jwt_param import subprotocol_token

SECRET = "s" * 48


def test_an_issued_token_verifies_with_its_claims():
    issuer = TokenIssuer(SECRET, ttl_s=60)
    claims = issuer.verify(issuer.issue("alice", "sid-1"))
    assert claims["sub"] == "alice" and claims["sid"] == "sid-1" and claims["aud"] == core.AUDIENCE and claims["iss"] == core.ISSUER
    assert claims["exp"] - claims["iat"] == 60
    assert set(core.REQUIRED_CLAIMS) <= set(claims)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("alg none", "algorithm"),
        ("payload changed, old signature", "signature"),
        ("wrong audience", "audience"),
        ("wrong issuer", "issuer"),
        ("expired exp", "expired"),
    ],
)
def test_the_recommended_verifier_refuses_each_forgery_for_its_own_reason(case, reason):
    issuer = TokenIssuer(SECRET)
    forged = tampered_tokens(issuer.issue("alice", "sid-1"), SECRET)[case]
    with pytest.raises(AuthError) as exc:
        issuer.verify(forged)
    assert exc.value.reason == reason


@pytest.mark.parametrize("case", ["alg none", "payload changed, old signature", "wrong audience", "wrong issuer", "expired exp"])
def test_the_weak_verifier_accepts_every_forgery(case):
    forged = tampered_tokens(TokenIssuer(SECRET).issue("alice", "sid-1"), SECRET)[case]
    assert TokenIssuer(SECRET, weak=True).verify(forged)["sid"] == "sid-1"


def test_a_token_signed_with_another_key_or_for_another_use_is_refused():
    mine = TokenIssuer(SECRET)
    with pytest.raises(AuthError, match="signature"):
        mine.verify(TokenIssuer("x" * 48).issue("alice", "s"))
    with pytest.raises(AuthError, match="wrong-use"):
        mine.verify(mine.issue("alice", "s", use="refresh"), use="access")


def test_a_token_missing_a_required_claim_is_refused():
    now = int(time.time())
    token = jwt.encode(
        {"iss": core.ISSUER, "aud": core.AUDIENCE, "sub": "a", "sid": "s", "use": "access", "iat": now, "exp": now + 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(AuthError, match="missing-jti"):
        TokenIssuer(SECRET).verify(token)


def test_replay_guard_accepts_only_increasing_sequence_numbers_per_session():
    g = ReplayGuard()
    assert g.accept("a", 1) and g.accept("a", 2) and g.accept("b", 1)
    assert not g.accept("a", 2) and not g.accept("a", 1) and not g.accept("a", "3") and not g.accept("a", True)
    off = ReplayGuard(enabled=False)
    assert off.accept("a", 1) and off.accept("a", 1)


def test_failure_limiter_blocks_at_the_limit_and_forgets_after_the_window():
    lim = FailureLimiter(limit=3, window_s=10)
    for t in (0.0, 1.0):
        lim.fail("ip", now=t)
    assert not lim.blocked("ip", now=2.0)
    lim.fail("ip", now=2.0)
    assert lim.blocked("ip", now=2.0) and not lim.blocked("other", now=2.0)
    assert not lim.blocked("ip", now=10.5)  # the first failure left the window
    off = FailureLimiter(limit=1, enabled=False)
    off.fail("ip")
    assert not off.blocked("ip")


def test_cookie_headers_round_trip_through_the_parser():
    header = core.recommended_cookie().header("v1", 60)
    parsed = core.parse_set_cookie([header])[core.COOKIE_NAME]
    assert parsed == {"value": "v1", "httponly": True, "secure": True, "samesite": "Strict", "path": "/", "max_age": "60"}
    weak = core.parse_set_cookie([core.weak_cookie().header("v2", 60)])[core.COOKIE_NAME]
    assert weak["samesite"] == "None" and not weak["httponly"]
    assert CookieSpec("n", True, True, "Lax").describe() == "`n`: SameSite=Lax; Path=/; HttpOnly; Secure"


@pytest.mark.parametrize(
    ("samesite", "secure", "cross_site", "top_level_get", "sent"),
    [
        ("Strict", True, False, False, True),
        ("Strict", True, True, True, False),
        ("Lax", True, True, False, False),
        ("Lax", True, True, True, True),
        ("", True, True, False, False),  # no attribute: Lax by default
        ("None", True, True, False, True),
        ("None", False, True, False, False),  # SameSite=None without Secure is rejected
    ],
)
def test_browser_cookie_rules(samesite, secure, cross_site, top_level_get, sent):
    attrs = {"samesite": samesite, "secure": secure}
    assert core.browser_sends_cookie(attrs, cross_site=cross_site, top_level_get=top_level_get) is sent


def test_secure_cookies_need_a_secure_context():
    assert not core.browser_sends_cookie({"samesite": "Strict", "secure": True}, cross_site=False, secure_context=False)


def test_origin_allow_list_is_an_exact_match():
    allow = core.allowed_origins(8080)
    assert core.origin_allowed("http://localhost:8080", allow, missing_ok=False)
    assert not core.origin_allowed("http://localhost:8081", allow, missing_ok=False)
    assert not core.origin_allowed("http://localhost:8080.evil.example", allow, missing_ok=False)
    assert not core.origin_allowed(None, allow, missing_ok=False) and core.origin_allowed(None, allow, missing_ok=True)


def test_subprotocol_token_takes_the_token_after_the_protocol_name():
    assert subprotocol_token(f"{core.SUBPROTOCOL}, abc.def.ghi") == "abc.def.ghi"
    assert subprotocol_token("abc.def.ghi") is None and subprotocol_token(None) is None
    assert subprotocol_token("other, abc") is None


def test_redact_hides_credentials_plain_and_url_encoded():
    assert redact("GET /ws?token=a+b/c HTTP/1.1 a%2Bb%2Fc", ["a+b/c"]) == "GET /ws?token=<credential> HTTP/1.1 <credential>"


def test_secrets_do_not_print():
    from spikes.s05_auth.scenarios import Secrets

    s = Secrets()
    assert s.jwt not in repr(s) and len(s.jwt) >= 48 and s.jwt != Secrets().jwt


def test_starting_a_poc_server_imports_none_of_the_harness():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, spikes.s05_auth.poc.server as s; print(sorted(m for m in sys.modules if m.split('.')[0] == 'harness'))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[3], timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
