"""Spike 4's decision, declared as data for ``harness.decide``: the seed's comparison points as criteria, and the gate.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored runs
(``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, Metric, NotMeasured, Part, Utility
from harness.decide.model import memory_per_connection_part
from harness.results import RunResult
from harness.stats import fmt_num

#: The network cuts the resume gate reads (a server restart loses an in-memory history whatever the transport: it is
#: reported, and the client is told to reload, but it does not judge the transport's resume).
CUTS = ("cut-1s", "cut-10s")


def _resume_lost(run: RunResult, option: str) -> float:
    """Feed events the server accepted that a listener never got, over the network cuts (the account's lost after ack)."""
    sr = run.ok("resume", option)
    if sr is None:
        raise NotMeasured("the resume scenario did not run for this option")
    cuts = [c for c in sr.fact.get("cells") or [] if c["fault"] in CUTS]
    if not cuts:
        raise NotMeasured("no network cut ran (a quick run may run only some)")
    return float(sum(c["total"].get("lost_after_ack", 0) + c["total"].get("duplicated", 0) for c in cuts))


def _browser_share(run: RunResult, option: str) -> float:
    """The share of the engines run (Chromium, Firefox ESR, WebKitGTK) where the transport opened, and resumed a cut without loss."""
    sr = run.ok("browsers", option)
    if sr is None:
        raise NotMeasured("the browsers scenario did not run for this option")
    ran, passed = sr.median("browser_engines_run"), sr.median("browser_engines_passed")
    if not ran:
        raise NotMeasured("no engine ran")
    return float(passed or 0.0) / float(ran)


def _proxy_share(run: RunResult, option: str) -> float:
    """The share of the proxy paths (whose own log showed the request) through which the feed worked."""
    sr = run.ok("proxies", option)
    if sr is None:
        raise NotMeasured("the proxies scenario did not run for this option")
    counted, working = sr.median("proxy_paths_counted"), sr.median("proxy_paths_working")
    if not counted:
        raise NotMeasured("no proxy cell was counted (no proxy log showed a request)")
    return float(working or 0.0) / float(counted)


GATES = (
    Gate(
        "no feed event lost or repeated on resume after a network cut",
        "data loss",
        Derived(
            _resume_lost,
            "events the server acknowledged that a listener never received, plus events received twice, over the 1 s and 10 s cuts "
            "(the harness's account; the correct configuration: direct, with the transport's resume point)",
            exact=True,
        ),
        "events",
        "the issue's gate: a transport that loses feed events on resume, in the correct configuration, cannot be recommended",
        at_most=0,
        fmt=lambda v: f"{fmt_num(v)} events",
    ),
)

_LATENCY = Utility(20, 500, "20 ms is within a frame at a table; past half a second an activity line reads as late", log=True)

CRITERIA = (
    Criterion(
        "Browser support",
        (
            Part(
                "engines that opened the transport and resumed a cut without loss (measured)",
                Derived(_browser_share, "engines passed / engines run, in Chromium, Firefox ESR and WebKitGTK", exact=True),
                "share",
                Utility(1.0, 0.5, "every engine the app targets must work; failing in one of three engines is a blocker for its users"),
                min_diff=0.34,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "measured in the three engines this machine runs; the published data for Edge and mobile is shown beside it and not scored",
    ),
    Criterion(
        "Proxy compatibility",
        (
            Part(
                "proxy paths the feed got through",
                Derived(_proxy_share, "paths that worked / paths counted (each path's own log showing the request)", exact=True),
                "share",
                Utility(1.0, 0.4, "a corporate proxy the app cannot configure decides whether players behind it can play"),
                min_diff=0.125,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "nginx with default, correct, gzip and short-timeout settings, HTTP/2 with TLS, squid as a forward proxy, a buffering proxy",
    ),
    Criterion(
        "Resource usage",
        (
            memory_per_connection_part(
                Metric("latency", "memory_per_connection_bytes", {"path": "direct-h1", "rate": "10"}), "server memory per listener"
            ),
            Part(
                "server CPU per delivered event at 10 events/s",
                Metric("latency", "server_cpu_us_per_event", {"path": "direct-h1", "rate": "10"}),
                "µs",
                Utility(5, 200, "5 µs: a core delivers 200,000 events/s; 200 µs: 5,000, a few busy rooms", log=True),
                min_diff=5,
                fmt=lambda v: f"{fmt_num(v)} µs",
            ),
            Part(
                "bytes in per delivered event",
                Metric("latency", "bytes_in_per_event", {"path": "direct-h1", "rate": "10"}),
                "B",
                Utility(150, 600, "an event's JSON is about 150 bytes: framing and headers on top are what a transport adds", log=True),
                min_diff=20,
                fmt=lambda v: f"{fmt_num(v)} B",
            ),
        ),
        "the server's cost of a listener and of an event, and the bytes each event costs on the wire",
    ),
    Criterion(
        "Latency",
        (
            Part(
                "p99 at 10 events/s", Metric("latency", "latency_p99_ms", {"path": "direct-h1", "rate": "10"}), "ms", _LATENCY, min_diff=5
            ),
            Part(
                "capacity: events/s one room holds within its bounds",
                Metric("capacity", "capacity_events_per_s"),
                "events/s",
                Utility(1000, 20, "1,000 events/s per room is far beyond a table; 20 is a busy table's activity", log=True),
                min_diff=50,
                fmt=lambda v: f"{fmt_num(v)} events/s",
            ),
        ),
        "publish-to-receive latency from the intended send time, and how much feed traffic a room holds within the latency bound",
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {"sse": ("python",), "longpoll": ("python",), "ws": ("python",)}
