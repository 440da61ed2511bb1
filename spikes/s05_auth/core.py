"""Spike 5's authentication logic as plain objects, tested without a network.

The POC servers (``poc/``) only wire these to HTTP and WebSocket I/O. Every
setting the document recommends is a constant here, so the recommendation
quotes the configuration the runs actually used, not prose.
"""

from __future__ import annotations

import collections
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import jwt

__all__ = [
    "ISSUER",
    "AUDIENCE",
    "ALGORITHMS",
    "REQUIRED_CLAIMS",
    "ACCESS_TTL_S",
    "SESSION_TTL_S",
    "REFRESH_TTL_S",
    "AUTH_TIMEOUT_S",
    "FAILED_AUTH_LIMIT",
    "FAILED_AUTH_WINDOW_S",
    "CLOSE_CODES",
    "COOKIE_NAME",
    "REFRESH_COOKIE_NAME",
    "SUBPROTOCOL",
    "AuthError",
    "TokenIssuer",
    "ReplayGuard",
    "FailureLimiter",
    "CookieSpec",
    "recommended_cookie",
    "weak_cookie",
    "origin_allowed",
    "allowed_origins",
    "parse_set_cookie",
    "browser_sends_cookie",
    "new_sid",
    "Principal",
]

ISSUER = "https://auth.tabletop.local"
AUDIENCE = "tabletop-realtime"
#: The only algorithm a verifier accepts: pinned, so ``alg: none`` or an RS/HS confusion cannot choose it.
ALGORITHMS = ("HS256",)
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sid", "aud", "iss", "jti", "use")
#: Access token lifetime of the refresh option (full profile; runs may shorten it, the run records the value used).
ACCESS_TTL_S = 60
#: Lifetime of a login (the JWT of the jwt-param and cookie options, the Redis session).
SESSION_TTL_S = 8 * 3600
REFRESH_TTL_S = 8 * 3600
#: A connection that authenticates by its first message must send it within this time.
AUTH_TIMEOUT_S = 5.0
#: Failed authentications allowed per client address in a sliding window, before 429 / close 4029.
FAILED_AUTH_LIMIT = 10
FAILED_AUTH_WINDOW_S = 60.0
COOKIE_NAME = "tt_session"
REFRESH_COOKIE_NAME = "tt_refresh"
#: Sec-WebSocket-Protocol variant: the client offers ``[SUBPROTOCOL, token]``; the server selects SUBPROTOCOL.
SUBPROTOCOL = "tabletop.v1"

#: WebSocket close codes the servers use (4000-4999 is the application range, RFC 6455 section 7.4.2).
CLOSE_CODES: dict[int, str] = {
    4000: "authentication failed (bad or missing token in the first message, or none within the auth timeout)",
    4001: "access token expired and was not renewed over the connection",
    4003: "session revoked (logout or administrator), or a renewal for another session",
    4029: "too many failed authentications from this address",
}


class AuthError(Exception):
    """A credential was refused; ``reason`` is a short machine-readable word for logs and evidence."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TokenIssuer:
    """Issues and verifies HS256 JWTs.

    ``weak`` reproduces the classic mistake: ``jwt.decode`` with signature
    verification off, which in PyJWT also turns off the exp, aud and iss checks
    and accepts ``alg: none``.
    """

    secret: str
    ttl_s: float = SESSION_TTL_S
    weak: bool = False

    def issue(self, sub: str, sid: str, use: str = "access", ttl_s: float | None = None, now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "sid": sid,
            "use": use,
            "jti": uuid.uuid4().hex,
            "iat": int(now),
            "exp": int(now + (self.ttl_s if ttl_s is None else ttl_s)),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHMS[0])

    def verify(self, token: str, use: str = "access") -> dict[str, Any]:
        """The token's claims, or :class:`AuthError` naming why it was refused."""
        try:
            if self.weak:
                claims = jwt.decode(token, options={"verify_signature": False})
            else:
                claims = jwt.decode(
                    token,
                    self.secret,
                    algorithms=list(ALGORITHMS),
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    options={"require": list(REQUIRED_CLAIMS)},
                )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthError("signature") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("algorithm") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing-{exc.claim}") from None
        except jwt.PyJWTError:
            raise AuthError("malformed") from None
        if not self.weak and claims.get("use") != use:
            raise AuthError("wrong-use")
        if "sub" not in claims or "sid" not in claims:
            raise AuthError("malformed")
        return claims


class ReplayGuard:
    """Per-session message sequence numbers: a message whose ``seq`` is not above the last accepted one is a replay."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._last: dict[str, int] = {}

    def accept(self, sid: str, seq: Any) -> bool:
        if not self.enabled:
            return True
        if not isinstance(seq, int) or isinstance(seq, bool):
            return False
        if seq <= self._last.get(sid, -1):
            return False
        self._last[sid] = seq
        return True


class FailureLimiter:
    """Failed authentications per client address in a sliding window; over the limit the address is refused."""

    def __init__(self, limit: int = FAILED_AUTH_LIMIT, window_s: float = FAILED_AUTH_WINDOW_S, enabled: bool = True):
        self.limit, self.window_s, self.enabled = limit, window_s, enabled
        self._fails: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def _trim(self, key: str, now: float) -> collections.deque[float]:
        q = self._fails[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def blocked(self, key: str, now: float | None = None) -> bool:
        if not self.enabled:
            return False
        return len(self._trim(key, time.monotonic() if now is None else now)) >= self.limit

    def fail(self, key: str, now: float | None = None) -> None:
        if self.enabled:
            now = time.monotonic() if now is None else now
            self._trim(key, now).append(now)


@dataclass(frozen=True)
class CookieSpec:
    """The attributes of a credential cookie, as the server sets them."""

    name: str
    http_only: bool
    secure: bool
    same_site: str  # "Strict", "Lax" or "None"
    path: str = "/"

    def header(self, value: str, max_age: int) -> str:
        parts = [f"{self.name}={value}", f"Path={self.path}", f"Max-Age={max_age}", f"SameSite={self.same_site}"]
        if self.http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def describe(self) -> str:
        flags = [f"SameSite={self.same_site}", f"Path={self.path}"]
        flags += ["HttpOnly"] if self.http_only else []
        flags += ["Secure"] if self.secure else []
        return f"`{self.name}`: " + "; ".join(flags)


def recommended_cookie(name: str = COOKIE_NAME, path: str = "/") -> CookieSpec:
    return CookieSpec(name, http_only=True, secure=True, same_site="Strict", path=path)


def weak_cookie(name: str = COOKIE_NAME, path: str = "/") -> CookieSpec:
    return CookieSpec(name, http_only=False, secure=True, same_site="None", path=path)


def allowed_origins(port: int) -> tuple[str, ...]:
    """The Origin allow-list of a POC server: its own origins (production would list https://tabletop.example)."""
    return (f"http://localhost:{port}", f"http://127.0.0.1:{port}")


def origin_allowed(origin: str | None, allow: tuple[str, ...], *, missing_ok: bool) -> bool:
    """Exact match against the allow-list; a missing Origin passes only where ``missing_ok`` (non-browser clients)."""
    if origin is None:
        return missing_ok
    return origin in allow


def parse_set_cookie(headers: list[str]) -> dict[str, dict[str, Any]]:
    """Set-Cookie headers to ``{name: {value, httponly, secure, samesite, path, max_age}}``."""
    out: dict[str, dict[str, Any]] = {}
    for h in headers:
        c: SimpleCookie = SimpleCookie()
        c.load(h)
        for name, m in c.items():
            out[name] = {
                "value": m.value,
                "httponly": bool(m["httponly"]),
                "secure": bool(m["secure"]),
                "samesite": m["samesite"] or "",
                "path": m["path"] or "/",
                "max_age": m["max-age"],
            }
    return out


def browser_sends_cookie(attrs: Mapping[str, Any], *, cross_site: bool, top_level_get: bool = False, secure_context: bool = True) -> bool:
    """Whether a browser attaches a cookie to a request (RFC 6265bis, as Chromium applies it).

    Secure cookies need a secure context (https, or http://localhost, which
    Chromium treats as one). SameSite=Strict: same-site requests only. Lax (and
    no attribute: Chromium's default): same-site, or a cross-site top-level GET
    navigation. None: every request, but only together with Secure.
    """
    if attrs.get("secure") and not secure_context:
        return False
    if not cross_site:
        return True
    same_site = (attrs.get("samesite") or "Lax").capitalize()
    if same_site == "None":
        return bool(attrs.get("secure"))
    if same_site == "Lax":
        return top_level_get
    return False


def new_sid() -> str:
    """An unguessable session id (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass
class Principal:
    """Who a connection belongs to."""

    user: str
    sid: str
    exp: float | None = None
    claims: dict[str, Any] = field(default_factory=dict)
