"""Spike 5's plugin: authentication for real-time connections, with an attack battery.

The plugin object ``spike`` declares the four options (POC servers under
``poc/``, logic in ``core.py``), the scenarios (``scenarios.py``: the attack
battery of ``attacks.py`` against each option's recommended and deliberately
weak server, the cost of authenticating, revocation across two instances) and
how the stored results become scores, the security matrix, the recommended
settings and findings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import frames
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.poc import PocServer
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num
from spikes.s05_auth import core
from spikes.s05_auth import robustness as _rb
from spikes.s05_auth import scenarios as _sc
from spikes.s05_auth.attacks import ATTACK_TITLES, ATTACKS
from spikes.s05_auth.decision import CRITERIA, GATES

__all__ = ["AuthSpike", "spike", "WEIGHTS"]

#: The seed's matrix with a Security criterion added (an auth spike must weigh what gets through); adds up to 100.
WEIGHTS = {"Security": 30, "Performance": 20, "Complexity": 15, "Maintenance": 15, "Scalability": 10, "Cost": 10}

_SHARED = ("core.py", "poc/common.py", "poc/server.py")
CROSS_TITLE = "Replay on another instance after logout"
#: A client process using this much of a core was the bottleneck of a closed-loop run.
CLIENT_BOUND_CORES = 0.9
#: One server for every option (``poc/server.py --option KEY``); the scenario gives its secrets and settings in the environment.
SERVER = PocServer(
    ("{python}", "-m", "spikes.s05_auth.poc.server", "--option", "{option}", "--port", "{port}"),
    url="http://{host}:{port}",
    ready="http:/health",
)

OPTIONS = (
    Option(
        "jwt-param",
        "JWT in connection params",
        "login returns an HS256 JWT; the client presents it in the Sec-WebSocket-Protocol header (or as the first message); stateless logout. "
        "Weak variant: token in the query string and localStorage, signature not verified, no Origin check, no rate limit, no sequence numbers",
        (*_SHARED, "poc/jwt_param.py"),
        ("aiohttp", "PyJWT"),
        server=SERVER,
    ),
    Option(
        "cookie",
        "Cookie-based auth",
        "login sets a signed-JWT session cookie (HttpOnly, Secure, SameSite=Strict) checked at the upgrade with the Origin allow-list; stateless "
        "logout clears the cookie. Weak variant: SameSite=None without HttpOnly, no Origin check, signature not verified, no rate limit",
        (*_SHARED, "poc/cookie.py"),
        ("aiohttp", "PyJWT"),
        server=SERVER,
    ),
    Option(
        "refresh",
        "Token refresh strategy",
        "short-lived access token sent as the first message and renewed over the open connection; rotating refresh token in an HttpOnly "
        "SameSite=Strict cookie; close 4001 when a token expires unrenewed; revocation list in the server's memory. Weak variant as jwt-param",
        (*_SHARED, "poc/refresh.py"),
        ("aiohttp", "PyJWT"),
        server=SERVER,
    ),
    Option(
        "sessions",
        "Session management (Redis)",
        "opaque session id (HttpOnly, Secure, SameSite=Strict cookie) looked up in Redis at the upgrade, several sessions per user; logout deletes "
        "the session and publishes it, and every instance closes its live connections with 4003. Weak variant: logout only clears the cookie, "
        "SameSite=None without HttpOnly, no Origin check, no rate limit",
        (*_SHARED, "poc/sessions.py"),
        ("aiohttp", "redis"),
        server=SERVER,
        requires=("redis-server",),
    ),
)

SCENARIOS = (
    Scenario(
        "attacks",
        "Attack battery",
        "Each option's server is started twice, with its recommended settings and with the deliberately weak ones, and attacked over loopback: "
        "cross-site WebSocket hijacking (Origin http://evil.example, with whatever cookies a browser would attach cross-site under the cookie "
        "attributes the server set), CSRF (cross-site form POSTs to /login and /refresh), XSS token theft (in headless Chromium the option's page logs "
        "in and connects, then injected script reads localStorage, document.cookie and string globals), token leakage (the server's aiohttp access "
        "log, default format, searched for the token, cookie and password), replay (a credential after logout and after expiry; a message re-sent), "
        "tampering (alg none, a changed payload on the old signature, tokens signed with the issuer's key for another audience or issuer, or already "
        "expired; a forged or altered session id) and a handshake flood (failed authentications from one address). Tokens and sessions live "
        "`ttl_s` seconds here so expiry can be observed.",
        _sc.run_attacks,
        _sc.ATTACK_PARAMS,
        _sc.ATTACK_QUICK,
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "cost",
        "Cost of authenticating",
        "Recommended server only, pinned to its own core. `logins` logins (latency recorded), then `connections` connect-authenticate-close "
        "cycles started at `rate` per second (open model: latency from each cycle's intended start to the server's welcome, raw samples), then "
        "`closed_connections` cycles by `concurrency` workers back to back (authenticated connections per second), then `memory_connections` "
        "authenticated connections held open: (server RSS with them - RSS before) / N. Redis commands per handshake from INFO commandstats "
        "(sessions only; the other options start no store). The client is aiohttp in the harness process.",
        _sc.run_cost,
        _sc.COST_PARAMS,
        _sc.COST_QUICK,
    ),
    Scenario(
        "revocation",
        "Revocation across instances",
        "Two instances of the recommended server share the secret (and Redis); a connection authenticates on instance B, the user logs out on "
        "instance A, and the time from sending the logout until B closes the connection (and its close code) is measured, up to `window_s`. Access tokens live `ttl_s` "
        "seconds (shortened from the recommended 60 s so the run is bounded: for the refresh option the measured time scales with it). At the same time the logged-out "
        "credential is replayed in a new connection to instance B (scored under Security). For the "
        "refresh option, a second client renews its token over the connection every quarter lifetime: does it outlive its first token?",
        _sc.run_revocation,
        _sc.REVOCATION_PARAMS,
        _sc.REVOCATION_QUICK,
        max_repeats=2,
    ),
    frames.robustness_scenario(plan=_rb.PLAN, start=_rb.start),
)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def _ms(x: float | None) -> str:
    return "n/a" if x is None else fmt_num(x, "ms")


class AuthSpike(Spike):
    """JWT in params vs cookies vs refreshed tokens vs Redis sessions, attacked and measured."""

    number = 5
    slug = "auth"
    title = "Authentication Architecture"
    priority = "critical"
    planned_hours = 6
    question = (
        "How should the tabletop authenticate its real-time connections (a JWT in the connection parameters, a session cookie, short-lived "
        "tokens renewed over the connection, or server-side sessions in Redis), judged by which attacks each one stops (CSRF, XSS token theft, "
        "token storage and leakage, replay) and by what authenticating costs?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    weights = WEIGHTS
    criteria = CRITERIA
    gates = GATES
    default_repeat = 3
    quick_repeat = 1
    package_dir = Path(__file__).parent

    # -- stored facts ----------------------------------------------------------------
    @staticmethod
    def results(run: RunResult, option: str, variant: str) -> dict[str, dict[str, Any]]:
        """The battery's results for one option and variant, by attack (empty when the step did not run)."""
        sr = run.ok("attacks", option)
        if sr is None:
            return {}
        return {r["attack"]: r for r in sr.fact.get(variant, {}).get("results", [])}

    @staticmethod
    def cross_instance_replay(run: RunResult, o: str) -> dict[str, str] | None:
        """The revocation scenario's replay of a logged-out credential on the other instance (got through if it did in any repeat)."""
        sr = run.ok("revocation", o)
        seen: list[dict[str, str]] = [f["replay_on_other_instance"] for f in sr.facts if "replay_on_other_instance" in f] if sr else []
        if not seen:
            return None
        return next((r for r in seen if r["outcome"] == "got-through"), seen[-1])

    def security(self, run: RunResult, o: str) -> tuple[int, int, list[str]] | None:
        """Attacks blocked and applicable for the recommended setup: the battery plus the cross-instance replay; None without the battery."""
        res = self.results(run, o, "recommended")
        if not res:
            return None
        applicable = [r for r in res.values() if r["outcome"] != "not-applicable"]
        through = [self._through_label(r) for r in applicable if r["outcome"] == "got-through"]
        cross = self.cross_instance_replay(run, o)
        total = len(applicable) + (1 if cross else 0)
        if cross and cross["outcome"] == "got-through":
            through.append(CROSS_TITLE.lower())
        return total - len(through), total, through

    def blocked_of(self, run: RunResult, o: str, variant: str) -> tuple[int, int] | None:
        """Attacks blocked and the attacks counted, as the security matrix's last row counts them.

        Recommended: the battery plus the revocation scenario's cross-instance replay (as the Security criterion);
        weak: the battery alone (the revocation scenario runs the recommended settings only).
        """
        if variant == "recommended":
            sec = self.security(run, o)
            return (sec[0], sec[1]) if sec else None
        sr = run.ok("attacks", o)
        if sr is None:
            return None
        blocked, applicable = sr.median("attacks_blocked", variant=variant), sr.median("attacks_applicable", variant=variant)
        return None if blocked is None or applicable is None else (int(blocked), int(applicable))

    def _attacks_chart(self, run: RunResult, opts: list[str], titles: dict[str, str]) -> Chart:
        counts = {v: {o: self.blocked_of(run, o, v) for o in opts} for v in _sc.VARIANTS}
        ran = {v: [f"{titles[o]} {c[0]} of {c[1]}" for o in opts if (c := counts[v][o])] for v in _sc.VARIANTS}
        totals = {c[1] for v in _sc.VARIANTS for c in counts[v].values() if c}
        return Chart(
            "attacks-blocked",
            "Attacks blocked, recommended vs weak settings",
            "bar",
            "attacks blocked" + (f" (of {totals.pop()})" if len(totals) == 1 else " (of the counts in the caption)"),
            {v: [c[0] if (c := counts[v][o]) else None for o in opts] for v in _sc.VARIANTS},
            [titles[o] for o in opts],
            caption="Each bar counts the attacks that applied to that option and setup, as the security matrices' last rows do: "
            + "; ".join(
                f"{v} settings ({'battery + replay on another instance' if v == 'recommended' else 'battery only'}): "
                + (", ".join(ran[v]) or "not run")
                for v in _sc.VARIANTS
            )
            + ". The replay on another instance comes from the revocation scenario, which runs the recommended settings only.",
            # A count from one repeat's facts (the battery runs once), so there is no spread across repeats to draw.
            spread={v: [None for _ in opts] for v in _sc.VARIANTS},
        )

    @staticmethod
    def _through_label(r: dict[str, Any]) -> str:
        cases = [c["case"] for c in r.get("cases", []) if c["outcome"] == "got-through"]
        return ATTACK_TITLES[r["attack"]].split(" (")[0].lower() + (f" ({', '.join(cases)})" if cases else "")

    @staticmethod
    def _handshakes(run: RunResult, o: str) -> list[float]:
        sr = run.ok("cost", o)
        return sr.measurement("handshake_ms").samples if sr else []

    @staticmethod
    def _handshake_spread(run: RunResult, o: str, q: float) -> tuple[float, float] | None:
        """Min-max over repeats of one repeat's q-th percentile of handshake latency, in ms; ``None`` with fewer than two repeats."""
        sr = run.ok("cost", o)
        per_repeat = [_pct(rep, q) for rep in sr.measurement("handshake_ms").repeats if rep] if sr else []
        return (min(per_repeat), max(per_repeat)) if len(per_repeat) >= 2 else None

    @staticmethod
    def _revocation(run: RunResult, o: str) -> tuple[float | None, float, ScenarioResult | None]:
        """Median ms from logout to close over the runs that closed, and the fraction of runs that closed."""
        sr = run.ok("revocation", o)
        if sr is None:
            return None, 0.0, None
        closed = sr.measurement("closed_after_logout").samples
        ms = sr.median("revocation_ms")
        return ms, (sum(closed) / len(closed) if closed else 0.0), sr

    # -- the document ------------------------------------------------------------------
    def report(self, run: RunResult) -> ReportContent:
        opts = run.options
        titles = {o.key: o.title for o in self.options}
        content = ReportContent()
        for variant, what in (("recommended", "recommended settings"), ("weak", "deliberately weak settings")):
            rows = []
            for a in ATTACKS:
                row = [ATTACK_TITLES[a]]
                for o in opts:
                    r = self.results(run, o, variant).get(a)
                    row.append(f"**{r['outcome']}**: {r['evidence']}" if r else self._why_missing(run, "attacks", o))
                rows.append(row)
            if variant == "recommended":
                rows.append(
                    [
                        f"{CROSS_TITLE} (revocation scenario)",
                        *(
                            (
                                f"**{c['outcome']}**: {c['evidence']}"
                                if (c := self.cross_instance_replay(run, o))
                                else self._why_missing(run, "revocation", o)
                            )
                            for o in opts
                        ),
                    ]
                )
            totals = [f"{bc[0]} of {bc[1]}" if (bc := self.blocked_of(run, o, variant)) else "not run" for o in opts]
            rows.append(["**blocked**", *totals])
            content.tables.append(
                Table(
                    f"Security matrix, {what}",
                    ["Attack", *(titles[o] for o in opts)],
                    rows,
                    "Each cell is what the attack did against a running server, with its evidence; credentials in log lines are replaced by `<credential>`."
                    + (
                        " The last attack comes from the revocation scenario (two instances, recommended settings only)."
                        if variant == "recommended"
                        else ""
                    )
                    + (
                        " The weak variants exist to prove each attack is real: an attack that gets through somewhere here is one the recommended settings had to stop."
                        if variant == "weak"
                        else ""
                    ),
                )
            )
        self._cost(run, content, opts, titles)
        self._revocation_table(run, content, opts, titles)
        self._settings(run, content)
        self._browser_note(run, content, opts, titles)
        content.charts.append(self._attacks_chart(run, opts, titles))
        robustness = frames.robustness_table(run, titles)
        if robustness is not None:
            content.tables.append(robustness)
        content.findings = self._findings(run) + frames.robustness_findings(run)
        content.notes.append(
            f"Criterion weights: {', '.join(f'{k} {v}%' for k, v in run.weights.items())}. Security is added to the seed's matrix because an "
            "authentication scheme that lets an attack through is not a candidate however fast it is; the other five keep the seed's order."
        )
        return content

    def _cost(self, run: RunResult, content: ReportContent, opts: list[str], titles: dict[str, str]) -> None:
        rows = []
        for label, fn in (
            ("login, median", lambda sr: _ms(sr.median("login_ms"))),
            ("handshake p50 (open model)", lambda sr: _ms(_pct(sr.measurement("handshake_ms").samples, 50))),
            ("handshake p90", lambda sr: _ms(_pct(sr.measurement("handshake_ms").samples, 90))),
            ("handshake p99", lambda sr: _ms(_pct(sr.measurement("handshake_ms").samples, 99))),
            ("handshake samples", lambda sr: fmt_num(len(sr.measurement("handshake_ms").samples))),
            ("authenticated connections/s, median", lambda sr: fmt_num(sr.median("connections_per_s"))),
            (
                "authenticated connections/s, range",
                lambda sr: "-".join(fmt_num(f(sr.measurement("connections_per_s").samples)) for f in (min, max)),
            ),
            ("server CPU during the closed loop", lambda sr: f"{sr.median('closed_server_cpu'):.2f} cores"),
            ("client (harness) CPU during the closed loop", lambda sr: f"{sr.median('closed_client_cpu'):.2f} cores"),
            ("server memory per authenticated connection", lambda sr: f"{fmt_num(sr.median('memory_per_connection_bytes') / 1024)} KiB"),
            ("Redis commands per handshake", lambda sr: fmt_num(sr.median("store_commands_per_connection"))),
            (
                "Redis memory and keys after the run",
                lambda sr: (
                    f"{fmt_num(sr.fact['redis_used_memory_bytes'] / 2**20)} MiB, {fmt_num(sr.fact['redis_keys'])} keys"
                    if sr.fact.get("redis_used_memory_bytes")
                    else "no store"
                ),
            ),
        ):
            rows.append([label, *(fn(sr) if (sr := run.ok("cost", o)) else self._why_missing(run, "cost", o) for o in opts)])
        params = next((sr.params for sr in run.scenarios if sr.scenario == "cost"), None)
        if params:
            content.tables.append(
                Table(
                    "Cost of authenticating (recommended settings)",
                    ["Metric", *(titles[o] for o in opts)],
                    rows,
                    f"{params['connections']} handshakes at {params['rate']}/s per repeat, latency from each one's intended start; "
                    f"{params['closed_connections']} back-to-back by {params['concurrency']} workers; {params['memory_connections']} held open for memory.",
                )
            )
            bound = [titles[o] for o in opts if (v := run.median("cost", o, "closed_client_cpu")) is not None and v >= CLIENT_BOUND_CORES]
            if bound:
                content.notes.append(
                    f"**Client-bound.** During the closed loop the harness's client used at least {CLIENT_BOUND_CORES} of a core for: {', '.join(bound)}. "
                    "Those connections-per-second figures are the client's limit, a floor for the server, and the Performance score compares floors."
                )
            content.charts.append(
                Chart(
                    "handshake",
                    "Authenticated handshake latency (open model)",
                    "bar",
                    "ms",
                    {titles[o]: [(_pct(xs, q) if (xs := self._handshakes(run, o)) else None) for q in (50, 90, 99)] for o in opts},
                    ["p50", "p90", "p99"],
                    caption="Percentiles of every handshake of every repeat; a whisker spans that percentile's lowest and highest "
                    "value among the repeats, each taken over one repeat's handshakes.",
                    spread={titles[o]: [self._handshake_spread(run, o, q) for q in (50, 90, 99)] for o in opts},
                )
            )
            content.charts.append(
                Chart(
                    "connections-per-s",
                    "Authenticated connections per second",
                    "bar",
                    "connections/s",
                    {titles[o]: [run.median("cost", o, "connections_per_s")] for o in opts},
                    ["closed loop"],
                    spread={titles[o]: [run.spread("cost", o, "connections_per_s")] for o in opts},
                )
            )

    def _revocation_table(self, run: RunResult, content: ReportContent, opts: list[str], titles: dict[str, str]) -> None:
        rows = []
        for label, fn in (
            (
                "live connection closed after logout",
                lambda sr: (
                    f"{fmt_num(sum(sr.measurement('closed_after_logout').samples))} of {len(sr.measurement('closed_after_logout').samples)} runs"
                ),
            ),
            (
                "time from logout to close, median",
                lambda sr: (
                    _ms(sr.median("revocation_ms"))
                    if sr.median("revocation_ms") is not None
                    else f"still open after {sr.fact['window_s']} s"
                ),
            ),
            (
                "close code",
                lambda sr: (
                    f"{sr.fact['close_code']}: {core.CLOSE_CODES.get(sr.fact['close_code'], '')}" if sr.fact.get("close_code") else "none"
                ),
            ),
            (
                "renewing client outlived its first token",
                lambda sr: (
                    (
                        f"{'yes' if sr.fact['renewal']['open'] else 'no'}: {sr.fact['renewal']['renewals']} renewals over "
                        f"{sr.fact['renewal']['held_s']} s"
                        + (f", closed {sr.fact['renewal']['close_code']}" if sr.fact["renewal"]["close_code"] else "")
                    )
                    if "renewal" in sr.fact
                    else "n/a (no renewal)"
                ),
            ),
        ):
            rows.append([label, *(fn(sr) if (sr := run.ok("revocation", o)) else self._why_missing(run, "revocation", o) for o in opts)])
        params = next((sr.params for sr in run.scenarios if sr.scenario == "revocation"), None)
        if params:
            content.tables.append(
                Table(
                    "Revocation: logout on instance A, live connection on instance B",
                    ["Metric", *(titles[o] for o in opts)],
                    rows,
                    f"Access tokens live {params['ttl_s']} s in this scenario; window {params['window_s']} s.",
                )
            )

    def _settings(self, run: RunResult, content: ReportContent) -> None:
        """The settings of every option whose recommended server blocked every applicable attack, as configured and as observed."""
        clean = [o for o in run.options if (sec := self.security(run, o)) and sec[0] == sec[1]]
        if not clean:
            content.notes.append(
                "**No option's recommended settings blocked every attack in this run**, so no settings are recommended from it."
            )
            return
        titles = {o.key: o.title for o in self.options}
        # Close codes seen anywhere in this run's recommended servers (every option shares the code table).
        observed_codes = sorted(
            {
                int(c)
                for o in run.options
                for r in self.results(run, o, "recommended").values()
                for c in re.findall(r"closed with (\d{4})", r["evidence"])
            }
            | {int(sr.fact["close_code"]) for o in run.options if (sr := run.ok("revocation", o)) and sr.fact.get("close_code")}
        )
        rows = []
        for o in clean:
            res = self.results(run, o, "recommended")
            facts = run.ok("attacks", o).fact["recommended"]  # type: ignore[union-attr]
            for name, attrs in facts.get("set_cookie", {}).items():
                flags = (
                    [f"SameSite={attrs['samesite']}", f"Path={attrs['path']}"]
                    + (["HttpOnly"] if attrs["httponly"] else [])
                    + (["Secure"] if attrs["secure"] else [])
                )
                rows.append([titles[o], f"cookie `{name}`", "; ".join(flags), f"Set-Cookie as received; {res['cswsh']['evidence']}"])
            if "token_claims" in facts:
                rows.append(
                    [
                        titles[o],
                        "JWT verification",
                        f"algorithms={list(core.ALGORITHMS)}, audience={core.AUDIENCE}, issuer={core.ISSUER}, required claims "
                        f"{', '.join(core.REQUIRED_CLAIMS)}",
                        f"tampering: {res['tampering']['evidence']}",
                    ]
                )
            rows.append(
                [
                    titles[o],
                    "Origin allow-list",
                    "exact match on the app's own origins (POC: http://localhost:PORT, http://127.0.0.1:PORT); no wildcard",
                    f"cross-site hijacking: {res['cswsh']['evidence']}",
                ]
            )
            rows.append(
                [
                    titles[o],
                    "failed-authentication limit",
                    f"{core.FAILED_AUTH_LIMIT} per {core.FAILED_AUTH_WINDOW_S:g} s per client address, then HTTP 429 / close 4029",
                    f"flood: {res['flood']['evidence']}",
                ]
            )
            rows.append(
                [
                    titles[o],
                    "message replay",
                    "per-session sequence numbers, strictly increasing",
                    next((c["evidence"] for c in res["replay"]["cases"] if c["case"] == "message re-sent"), ""),
                ]
            )
        rows.append(
            [
                "every option",
                "token lifetimes",
                f"access token {core.ACCESS_TTL_S} s (refresh option), renewed over the connection; session / refresh token "
                f"{core.SESSION_TTL_S // 3600} h; first-message auth within {core.AUTH_TIMEOUT_S:g} s",
                "configuration constants in core.py (runs shorten them to observe expiry)",
            ]
        )
        rows.append(
            [
                "every option",
                "close codes",
                "; ".join(f"{c} {d}" for c, d in core.CLOSE_CODES.items()),
                f"observed in this run: {', '.join(map(str, observed_codes)) or 'none'}",
            ]
        )
        content.tables.append(
            Table(
                "Settings of the options whose recommended setup blocked every attack",
                ["Option", "Setting", "Value", "Evidence from this run"],
                rows,
                "Values are the POC servers' configuration (spikes/s05_auth/core.py) or, for cookies, the Set-Cookie header the server actually sent.",
            )
        )

    def _browser_note(self, run: RunResult, content: ReportContent, opts: list[str], titles: dict[str, str]) -> None:
        kept = []
        for o in opts:
            sr = run.ok("attacks", o)
            b = sr.fact.get("recommended", {}).get("browser", {}) if sr else {}
            if "secure_cookie_kept" in b:
                k = b["secure_cookie_kept"]
                kept.append(
                    f"{titles[o]}: localhost {'kept' if k['localhost'] else 'dropped'}, 127.0.0.1 {'kept' if k['127.0.0.1'] else 'dropped'}"
                )
        if kept:
            content.notes.append(
                "**Secure cookies over plain http on loopback.** Chromium was asked to store each server's Secure cookie from a page served "
                "over http (no TLS): " + "; ".join(kept) + ". Chromium treats loopback as a secure context, so the Secure flag stays on in "
                "these tests without a certificate; in production the app is served over https anyway."
            )

    @staticmethod
    def _why_missing(run: RunResult, scen: str, option: str) -> str:
        sr = run.result(scen, option)
        return "not in this run" if sr is None else sr.status.replace("_", " ")

    def _findings(self, run: RunResult) -> list[Finding]:
        out = []
        for o in run.options:
            for r in self.results(run, o, "recommended").values():
                if r["outcome"] == "got-through":
                    cases = [f"{c['case']}: {c['evidence']}" for c in r.get("cases", []) if c["outcome"] == "got-through"] or [
                        r["evidence"]
                    ]
                    out.append(
                        Finding(
                            o,
                            False,
                            f"with its recommended settings, {ATTACK_TITLES[r['attack']].split(' (')[0].lower()} got through ({'; '.join(cases)}).",
                        )
                    )
        return out


spike = AuthSpike()
