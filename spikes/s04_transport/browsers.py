"""Spike 4's measured browser matrix: each transport in Chromium, Firefox ESR and WebKitGTK, and the per-origin limit.

For each engine, :func:`run_engine` opens the harness's page (``web/top.html``, through
:func:`harness.browser.run_page`), which loads ``web/s04.html`` in an iframe from each feed server's own
origin (the servers serve ``web/`` at ``/static/``: the page and its transports are same-origin, as an app's
would be) and runs one step at a time:

- **a transport step** (``sse``, ``poll``, ``ws``): open the transport for a fresh room, publish a batch and
  receive it, then the page asks the harness to **cut** (``GET {ctl}/cut``): a :class:`harness.faults.FaultProxy`
  between the browser and the server resets every connection of that origin at once (an RST to both ends, the
  server staying up: what a NAT or load balancer forgetting its flows does). The page publishes a second batch
  while the transport is down, waits for the transport to come back (EventSource by itself, naming
  ``Last-Event-ID``; long polling and WebSocket by the page's own code, naming the cursor / ``after``), and
  publishes a last batch live. The cut is made from outside on purpose: a server restart would lose the
  in-memory history and turn every resume into a ``reset``, and the protocol has no "close me" endpoint.
- **the probe**: 8 EventSources to one origin at once, then one more fetch: over HTTP/1.1 an engine keeps at most
  6 connections per origin, so the 7th stream and the fetch stall; over HTTP/2 (an nginx TLS front, when the
  caller gives one) they share one connection.

The page records raw facts (what was acknowledged, what arrived when, when the transport dropped and came back);
:func:`transport_cell` and :func:`probe_cell` turn them into the matrix's cells here, in plain Python that the
tests check without a browser. One browser runs at a time.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.browser import ENGINES, BrowserError, PageResult, run_page
from harness.faults import FaultLog, FaultProxy
from harness.plugin import NotRunnable

__all__ = [
    "WEB_DIR",
    "TRANSPORTS",
    "ENGINE_NAMES",
    "CUT_METHOD",
    "PageSettings",
    "page_files",
    "build_steps",
    "transport_cell",
    "probe_cell",
    "h2_unsupported_reason",
    "nginx_h2_front",
    "run_engine",
    "run_matrix",
]

WEB_DIR = Path(__file__).resolve().parent / "web"
TRANSPORTS = ("sse", "poll", "ws")
ENGINE_NAMES = ("chromium", "firefox", "webkit")
CUT_METHOD = (
    "harness.faults.FaultProxy.reset_connections() between the browser and the feed server: every open connection "
    "of the page's origin reset (RST to both ends) while the server stays up and keeps its history"
)
#: Chromium trusts the nginx front's self-signed certificate with this flag (run_page passes Chromium flags only).
_CHROMIUM_H2_ARGS = ("--ignore-certificate-errors",)


@dataclass(frozen=True)
class PageSettings:
    """How long the page waits for each phase, in milliseconds (scale them on a slow machine), and the batch size."""

    batch: int = 5
    open_ms: int = 8_000
    deliver_ms: int = 8_000
    #: EventSource's reconnect delay is the engine's own (about 3 s in Chromium, 5 s or more in Firefox) plus jitter.
    resume_ms: int = 20_000
    settle_ms: int = 300
    retry_ms: int = 250
    hold_s: int = 5
    probe_count: int = 8
    probe_ms: int = 3_000
    fetch_ms: int = 2_000

    def scaled(self, factor: float) -> PageSettings:
        """Every wait multiplied by ``factor`` (the tests' time unit); the batch and counts unchanged."""
        waits = ("open_ms", "deliver_ms", "resume_ms", "settle_ms", "probe_ms", "fetch_ms")
        return replace(self, **{k: int(getattr(self, k) * factor) for k in waits})

    def transport_step_ms(self) -> int:
        """The longest a transport step may take: open, three batches delivered, the resume, the settle."""
        return self.open_ms + 3 * self.deliver_ms + self.resume_ms + self.settle_ms + 5_000

    def probe_step_ms(self) -> int:
        return self.probe_ms + self.fetch_ms + 10_000


def page_files(config: Mapping[str, Any]) -> tuple[str, dict[str, bytes | str]]:
    """The top page's HTML and the files served beside it (its script and ``config.js`` holding ``config``)."""
    html = (WEB_DIR / "top.html").read_text(encoding="utf-8")
    files: dict[str, bytes | str] = {
        "top.js": (WEB_DIR / "top.js").read_text(encoding="utf-8"),
        "config.js": "window.S04_CONFIG = " + json.dumps(config) + ";\n",
    }
    return html, files


def build_steps(
    bases: Mapping[str, str],
    *,
    ctl: str | None,
    token: str,
    settings: PageSettings,
    probe_base: str | None,
    h2_base: str | None = None,
) -> list[dict[str, Any]]:
    """The top page's steps: one per transport in ``bases`` (transport -> base URL the page is served from), then
    the HTTP/1.1 probe at ``probe_base`` and the HTTP/2 probe at ``h2_base`` (each when given)."""
    tag = secrets.token_hex(4)
    common = {"retry_ms": settings.retry_ms, "settle_ms": settings.settle_ms}
    steps: list[dict[str, Any]] = []
    for t in TRANSPORTS:
        if t not in bases:
            continue
        page_ms = settings.transport_step_ms()
        steps.append(
            {
                **common,
                "id": f"{t}-{tag}",
                "kind": "transport",
                "transport": t,
                "base": bases[t].rstrip("/"),
                "room": f"s04-{t}-{tag}",
                "batch": settings.batch,
                "open_ms": settings.open_ms,
                "deliver_ms": settings.deliver_ms,
                "resume_ms": settings.resume_ms,
                "hold_s": settings.hold_s,
                "ctl": ctl,
                "target": t,
                "token": token,
                "page_ms": page_ms,
                "step_ms": page_ms + 10_000,
            }
        )
    for name, base in (("http1", probe_base), ("h2", h2_base)):
        if base is None:
            continue
        page_ms = settings.probe_ms + settings.fetch_ms + 5_000
        steps.append(
            {
                **common,
                "id": f"probe-{name}-{tag}",
                "kind": "probe",
                "probe": name,
                "base": base.rstrip("/"),
                "room": f"s04-probe-{name}-{tag}",
                "count": settings.probe_count,
                "probe_ms": settings.probe_ms,
                "fetch_ms": settings.fetch_ms,
                "page_ms": page_ms,
                "step_ms": page_ms + 10_000,
            }
        )
    return steps


# -- scoring: plain functions over what the page recorded ------------------------------------------------------


def _first(xs: Sequence[float], after: float) -> float | None:
    return next((x for x in xs if x >= after), None)


def transport_cell(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One matrix cell from a transport step's raw record (see ``web/s04.js``).

    ``lost``: acknowledged broadcasts (by ``n``) that never arrived; ``duplicated``: arrivals of an ``n`` already
    received; ``publisher_retries``: a seq acknowledged under two ``n`` (a publish retried, not a delivery fault).
    ``server_close_survived``: the transport dropped at the cut, came back, and the broadcasts after it arrived
    (or the drop never showed: the engine retried the request by itself). ``reconnect_gap_ms``: from the page
    seeing the drop to the transport being back (``joined`` again, or a poll answered); ``cut_to_resume_ms`` from
    the cut's answer. ``last_event_id_sent`` (SSE only): the browser's own reconnect resumed after the last id the
    page saw, i.e. every broadcast published during the gap arrived and none twice: without the header the
    server would start at its head and they would be lost (inferred, as a page cannot see request headers).
    """
    if "error" in raw and "transport" not in raw:
        partial = raw.get("partial")
        cell = transport_cell(partial) if isinstance(partial, Mapping) and "transport" in partial else {"opened": False}
        return {**cell, "error": raw["error"]}
    transport = raw.get("transport")
    acks = [a for a in raw.get("acks", []) if isinstance(a, Mapping)]
    arrivals = [a for a in raw.get("arrivals", []) if isinstance(a, Mapping)]
    acked_n = {a["n"] for a in acks if isinstance(a.get("n"), int)}
    counts = Counter(a["n"] for a in arrivals if isinstance(a.get("n"), int))
    seq_ns: dict[Any, set[int]] = {}
    for a in acks:
        if isinstance(a.get("n"), int):
            seq_ns.setdefault(a.get("seq"), set()).add(a["n"])
    lost_n = sorted(acked_n - set(counts))
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    unnumbered = sum(1 for a in arrivals if not isinstance(a.get("n"), int))

    cut = raw.get("cut") or None
    drops = [d["t"] for d in raw.get("drops", []) if isinstance(d, Mapping) and isinstance(d.get("t"), (int, float))]
    ups = [float(u) for u in raw.get("ups", []) if isinstance(u, (int, float))]
    drop_t = resume_t = None
    if cut is not None:
        drop_t = _first(drops, float(cut.get("t_req", 0)))
        resume_t = _first(ups, drop_t) if drop_t is not None else None
    after_n = {a["n"] for a in acks if a.get("phase") == "after" and isinstance(a.get("n"), int)}
    gap_n = {a["n"] for a in acks if a.get("phase") == "gap" and isinstance(a.get("n"), int)}
    after_arrived = bool(after_n) and after_n <= set(counts)
    drop_seen = drop_t is not None
    if cut is None:
        survived: bool | None = None
    elif drop_seen:
        survived = resume_t is not None and after_arrived
    else:
        survived = after_arrived
    lid_sent: bool | None = None
    if transport == "sse" and drop_seen and resume_t is not None and not raw.get("page_reopens") and gap_n:
        lid_sent = gap_n <= set(counts) and not raw.get("resets")
    opened = bool(raw.get("opened"))
    complete = cut is not None and not raw.get("timeouts") and bool(acks)
    return {
        "opened": opened,
        "open_ms": raw.get("t_open"),
        "published": len(acks),
        "events_received": len(arrivals),
        "unique_received": len(counts),
        "lost": len(lost_n),
        "lost_n": lost_n[:20],
        "duplicated": duplicated,
        "publisher_retries": sum(1 for ns in seq_ns.values() if len(ns) > 1),
        "unnumbered": unnumbered,
        "cut": cut is not None,
        "cut_connections": ((cut or {}).get("info") or {}).get("connections"),
        "drop_seen": drop_seen,
        "server_close_survived": survived,
        "resumed_without_loss": (opened and complete and bool(survived) and not lost_n and duplicated == 0) if cut else None,
        "reconnect_gap_ms": round(resume_t - drop_t, 1) if drop_t is not None and resume_t is not None else None,
        "cut_to_resume_ms": round(resume_t - float(cut["t_done"]), 1) if resume_t is not None and cut and "t_done" in cut else None,
        "resume_by": {"sse": "browser (Last-Event-ID)", "poll": "page (cursor)", "ws": "page (join after)"}.get(str(transport))
        if not raw.get("page_reopens")
        else "page (EventSource closed: reopened with last_event_id)",
        "last_event_id_sent": lid_sent,
        "last_event_id_at_drop": raw.get("last_event_id_at_drop"),
        "drops": len(drops),
        "resets": list(raw.get("resets", [])),
        "errors": list(raw.get("errors", []))[:10],
        "timeouts": list(raw.get("timeouts", [])),
        "protocol": (raw.get("protocols") or {}).get("page"),
    }


def probe_cell(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The per-origin limit from a probe step: how many of the EventSources opened, and whether one more fetch went
    through while they held their connections (``fetch_stalled``: it had no answer within the page's wait).

    ``protocol`` is the page's ``nextHopProtocol``: "h2" over the HTTP/2 front; the three engines here report
    nothing (None) for cleartext HTTP/1.1, so None there means "not reported", not "unknown protocol".
    """
    if "error" in raw and "count" not in raw:
        return {"measured": False, "reason": str(raw["error"])}
    return {
        "measured": True,
        "count": raw.get("count"),
        "opened": raw.get("opened"),
        "joined": raw.get("joined"),
        "fetch_stalled": not raw.get("fetch_ok"),
        "fetch_ms": raw.get("fetch_ms"),
        "fetch_waited_ms": raw.get("fetch_waited_ms"),
        "fetch_error": raw.get("fetch_error"),
        "protocol": (raw.get("protocols") or {}).get("page"),
        "fetch_protocol": raw.get("fetch_protocol"),
        "secure": raw.get("secure"),
    }


def h2_unsupported_reason(engine: str) -> str | None:
    """Why the HTTP/2 probe cannot run in ``engine`` here (None: it can).

    HTTP/2 in a browser needs TLS, and the nginx front's certificate is self-signed: Chromium takes a flag to trust
    it, but :func:`harness.browser.run_page` has no way to give Firefox a certificate or a pref (it writes the
    profile itself) nor MiniBrowser its ``--ignore-tls-errors`` (it passes only the URL).
    """
    if engine == "chromium":
        return None
    return (
        f"not measured: {ENGINES[engine].title} would have to trust the nginx front's self-signed certificate, and "
        "harness.browser.run_page has no way to say so for this engine (Chromium only takes extra flags)"
    )


@contextlib.contextmanager
def nginx_h2_front(feed_base: str, workdir: str | Path) -> Iterator[str]:
    """An nginx HTTP/2 + TLS front (``proxies.FeedNginx``, path ``nginx-h2-tls``, a throwaway self-signed
    certificate) before the feed server at ``feed_base``, for the block: yields its ``https://`` base.

    The front proxies every path, ``/static/`` included, so the probe's page is served over HTTP/2 too. Raises
    :class:`NotRunnable` when nginx or openssl is missing.
    """
    from spikes.s04_transport.proxies import FeedNginx, make_self_signed_cert

    host, port = _host_port(feed_base)
    base = Path(workdir)
    cert = make_self_signed_cert(base / "tls")
    nginx = FeedNginx(port, "nginx-h2-tls", feed_host=host, cert=cert, base_dir=base, keep_logs_in=base / "nginx-logs")
    nginx.start()
    try:
        yield nginx.url
    finally:
        nginx.stop()


# -- running ----------------------------------------------------------------------------------------------------


class _Control:
    """The page's line to the harness: ``GET /cut?target=T&token=K`` resets every connection through T's proxy."""

    def __init__(self, cut: Callable[[str], dict[str, Any]], token: str):
        self.calls: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path != "/cut" or q.get("token") != token:
                    code, body = 404, {"error": "unknown"}
                else:
                    try:
                        code, body = 200, cut(q.get("target", ""))
                    except Exception as exc:  # noqa: BLE001 - the page records it; the step fails visibly
                        code, body = 500, {"error": str(exc)}
                    outer.calls.append({"target": q.get("target"), **body})
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Access-Control-Allow-Origin", "*")  # the page is on the feed's origin
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="s04-control", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> _Control:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _host_port(base: str) -> tuple[str, int]:
    u = urllib.parse.urlsplit(base)
    if u.scheme != "http" or not u.hostname or not u.port:
        raise ValueError(f"a feed base must be http://HOST:PORT (got {base!r}): the fault proxy sits in front of it")
    return u.hostname, u.port


def run_engine(
    engine: str,
    feeds: Mapping[str, str],
    *,
    h2_base: str | None = None,
    h2_note: str | None = None,
    settings: PageSettings = PageSettings(),
    workdir: str | Path | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the page in ``engine`` against ``feeds`` (transport -> ``http://host:port`` of a server speaking it and
    serving ``web/`` at ``/static/``); return the engine's row of the matrix.

    Each distinct server gets a fault proxy of its own; the page is loaded through it, so the cut reaches every
    connection the page has to that origin. ``h2_base`` (``https://host:port`` of an HTTP/2 front serving
    ``/static/`` and ``/sse``) adds the HTTP/2 probe where the engine can trust its certificate; otherwise the
    row says why HTTP/2 was not measured (``h2_note`` when given). Raises :class:`NotRunnable` when the engine
    is missing and :class:`harness.browser.BrowserError` when the page sent nothing back.
    """
    unknown = set(feeds) - set(TRANSPORTS)
    if unknown:
        raise ValueError(f"unknown transports {sorted(unknown)}; known: {', '.join(TRANSPORTS)}")
    token = secrets.token_hex(8)
    log = FaultLog()
    upstreams = {t: _host_port(b) for t, b in feeds.items()}
    proxies: dict[tuple[str, int], FaultProxy] = {}
    for hp in dict.fromkeys(upstreams.values()):
        proxies[hp] = FaultProxy(hp[1], hp[0], log=log, name=f"s04 page -> {hp[0]}:{hp[1]}")

    def cut(target: str) -> dict[str, Any]:
        if target not in upstreams:
            raise ValueError(f"no feed for {target!r}")
        fault = proxies[upstreams[target]].reset_connections()
        return {"connections": fault.details.get("connections"), "kind": fault.kind}

    h2_reason = h2_unsupported_reason(engine) if h2_base else (h2_note or _NO_H2)
    started: list[FaultProxy] = []
    try:
        for p in proxies.values():
            started.append(p.start())
        bases = {t: f"http://127.0.0.1:{proxies[upstreams[t]].port}" for t in feeds}
        with _Control(cut, token) as ctl:
            steps = build_steps(
                bases,
                ctl=ctl.url,
                token=token,
                settings=settings,
                probe_base=bases.get("sse"),
                h2_base=h2_base if h2_base and h2_reason is None else None,
            )
            html, files = page_files({"steps": steps})
            budget = sum(s["step_ms"] for s in steps) / 1000 + 30
            page: PageResult = run_page(
                engine,
                html,
                files=files,
                timeout=timeout or budget,
                workdir=workdir,
                headless_firefox=False,
                chromium_args=_CHROMIUM_H2_ARGS if h2_base and engine == "chromium" else (),
            )
            calls = list(ctl.calls)
    finally:
        for p in started:
            p.stop()
    return _engine_row(engine, page, feeds, h2_reason, calls, log)


_NO_H2 = (
    "not measured: no HTTP/2 front was given (run_matrix(h2_base=...): spikes/s04_transport/proxies.py's "
    "nginx HTTP/2+TLS in front of the SSE server)"
)


def _engine_row(
    engine: str, page: PageResult, feeds: Mapping[str, str], h2_reason: str | None, calls: list[dict[str, Any]], log: FaultLog
) -> dict[str, Any]:
    data = page.data if isinstance(page.data, Mapping) else {}
    transports: dict[str, Any] = {}
    per_origin: dict[str, Any] = {}
    for s in data.get("steps", []):
        result = s.get("result") or {}
        if s.get("kind") == "transport":
            transports[s["transport"]] = {**transport_cell(result), "raw": result}
        else:
            probe = s["id"].split("-")[1]
            per_origin[probe] = {**probe_cell(result), "raw": result}
    per_origin.setdefault("http1", {"measured": False, "reason": "no SSE feed given: the probe opens EventSources"})
    if "h2" not in per_origin:
        per_origin["h2"] = {"measured": False, "reason": h2_reason or _NO_H2}
    return {
        "engine": engine,
        "title": ENGINES[engine].title,
        "status": "measured",
        "version": page.version,
        "label": page.label(),
        "user_agent": page.user_agent,
        "page": page.to_dict(),
        "feeds": dict(feeds),
        "cut_method": CUT_METHOD,
        "cuts": calls,
        "faults": log.to_list(),
        "transports": transports,
        "per_origin": per_origin,
        "total_ms": data.get("total_ms"),
    }


def run_matrix(
    feeds: Mapping[str, str],
    *,
    engines: Sequence[str] = ENGINE_NAMES,
    h2_base: str | None = None,
    h2_front: bool = False,
    h2_note: str | None = None,
    settings: PageSettings = PageSettings(),
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """The measured matrix: :func:`run_engine` for each engine in turn (one browser at a time).

    HTTP/2: pass ``h2_base`` (a front the caller runs), or ``h2_front=True`` to run :func:`nginx_h2_front` before
    ``feeds["sse"]`` for the matrix (needs ``workdir``; a missing nginx or openssl makes the HTTP/2 cells "not
    measured" with the reason, not the run fail). An engine that is not installed, or whose page sent nothing
    back, gets a row with ``status`` "not run" or "failed" and the reason instead of measurements: the matrix
    never hides a missing cell.
    """
    with contextlib.ExitStack() as stack:
        if h2_front and h2_base is None and "sse" in feeds and any(h2_unsupported_reason(e) is None for e in engines):
            if workdir is None:
                raise ValueError("h2_front=True needs a workdir (the nginx front's config, certificate and logs)")
            try:
                h2_base = stack.enter_context(nginx_h2_front(feeds["sse"], Path(workdir) / "h2-front"))
            except NotRunnable as exc:
                h2_note = f"not measured: {exc}"
        rows: dict[str, Any] = {}
        for engine in engines:
            wd = Path(workdir) / engine if workdir is not None else None
            try:
                rows[engine] = run_engine(engine, feeds, h2_base=h2_base, h2_note=h2_note, settings=settings, workdir=wd)
            except NotRunnable as exc:
                rows[engine] = {"engine": engine, "title": ENGINES[engine].title, "status": "not run", "reason": str(exc)}
            except BrowserError as exc:
                rows[engine] = {"engine": engine, "title": ENGINES[engine].title, "status": "failed", "reason": str(exc)}
    return {
        "source": "measured",
        "transports": [t for t in TRANSPORTS if t in feeds],
        "engines": rows,
        "cut_method": CUT_METHOD,
        "h2_front": h2_base,
        "settings": asdict(settings),
    }
