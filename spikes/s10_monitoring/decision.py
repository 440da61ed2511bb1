"""Spike 10's decision, declared as data for ``harness.decide``: overhead, completeness, the back end down, alerting.

Every scenario runs once per repeat for the ``prometheus`` carrier and measures every back end in turn (the
server restarted with each instrument), tagged ``instrument``; the values here read the option's own. Alerting
is measured only where an alerting back end runs here (Prometheus scraping the prometheus and otel servers):
for DataDog and Sentry it is "not measured" (their agent and service cannot run here), so by the decision
layer's rule the criterion is left out for every option and cannot decide the spike. Not part of the source
hash (like ``harness/decide``).
"""

from __future__ import annotations

import statistics

from harness.decide import Criterion, Derived, Gate, NotMeasured, Part, Utility
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num

CARRIER = "prometheus"
MiB = 1024 * 1024


def _carrier(run: RunResult, scenario: str) -> ScenarioResult:
    sr = run.ok(scenario, CARRIER)
    if sr is None:
        raise NotMeasured(f"the {scenario} scenario did not run")
    return sr


def values(run: RunResult, scenario: str, name: str, option: str, **tags: str) -> list[float]:
    """Every stored value of ``name`` for the option's instrument (all samples of every matching measurement)."""
    sr = _carrier(run, scenario)
    out: list[float] = []
    for m in sr.find(name):
        if m.tags.get("instrument") == option and all(m.tags.get(k) == v for k, v in tags.items()):
            out.extend(float(v) for v in m.samples)
    if not out:
        raise NotMeasured(f"{scenario} stored no {name} for {option}")
    return out


def _median(run: RunResult, scenario: str, name: str, option: str, **tags: str) -> float:
    return statistics.median(values(run, scenario, name, option, **tags))


def cpu_change(run: RunResult, option: str) -> float:
    """The server's CPU time per message in the closed loop, against the uninstrumented server of the same repeat, in %.

    Scored instead of the closed-loop throughput (shown beside it): with the generator on the other core, a throughput
    can be the generator's limit, while the server's own CPU per message is the cost whatever the generator does.
    """
    return _median(run, "overhead", "closed_server_us_per_msg_vs_none_pct", option)


def p99_change(run: RunResult, option: str) -> float:
    """Open-model p99 latency of the instrumented server against the uninstrumented one of the same repeat, in %."""
    return _median(run, "overhead", "latency_p99_vs_none_pct", option)


def received_share(run: RunResult, option: str) -> float:
    """Error events the back end received (or the counter it exposes) over those the server raised, in the storm."""
    return min(values(run, "storm", "received_share", option))


def silent_losses(run: RunResult, option: str) -> float:
    """Error events lost in the storm (back end up or down) that nothing reported."""
    return sum(values(run, "storm", "lost_unreported", option))


def blocked(run: RunResult, option: str) -> float:
    """1 if a probe's echo p99 during the storm (back end up or down) rose over 10x its p99 before the storm."""
    return max(values(run, "storm", "blocked", option))


def down_probe_ratio(run: RunResult, option: str) -> float:
    """A probe's echo p99 during the storm with the back end down, over its p99 before the storm."""
    return max(values(run, "storm", "down_probe_p99_ratio", option))


def down_rss_growth(run: RunResult, option: str) -> float:
    """The server's RSS growth over the storm with the back end down, in MiB."""
    return max(values(run, "storm", "down_rss_growth_bytes", option)) / MiB


def alert_seconds(run: RunResult, option: str) -> float:
    """Median, over the faults every instrument ran, of the seconds from the fault to each expected alert firing."""
    sr = _carrier(run, "alerts")
    runs = [{m.tags.get("fault") for m in sr.find("alerts_missed") if m.tags.get("instrument") == i} for i in _alert_instruments(sr)]
    common = set.intersection(*runs) if runs else set()
    vals = [
        v for m in sr.find("fault_to_firing_s") if m.tags.get("instrument") == option and m.tags.get("fault") in common for v in m.samples
    ]
    if not vals:
        raise NotMeasured(f"alerts stored no fault_to_firing_s for {option} in the faults every instrument ran")
    return statistics.median(vals)


def _alert_instruments(sr: ScenarioResult) -> list[str]:
    return sorted({m.tags["instrument"] for m in sr.find("alerts_missed") if "instrument" in m.tags})


def false_alarms(run: RunResult, option: str) -> float:
    """Alerts that fired during the clean period."""
    return sum(values(run, "alerts", "false_alarms", option))


GATES = (
    Gate(
        "loses no error event silently under an error storm",
        "data loss",
        Derived(
            silent_losses,
            "error events the back end never received that nothing reported (the SDK's own loss reports count as reported), over "
            "the storm with the back end up and with it down",
            exact=True,
        ),
        "events",
        "the issue's gate: an option that loses error events silently under the storm cannot be recommended for errors",
        at_most=0,
        fmt=lambda v: f"{fmt_num(v)} events lost silently",
    ),
    Gate(
        "does not block the server under an error storm",
        "scale",
        Derived(
            blocked,
            "1 when a concurrent probe's echo p99 during the storm (back end up or down) was over 10x its p99 before the storm",
            exact=True,
        ),
        "flag",
        "the issue's gate: an option that blocks the server under the storm cannot be recommended for errors",
        at_most=0,
        fmt=lambda v: "blocked (probe p99 over 10x)" if v else "did not block",
    ),
)

CRITERIA = (
    Criterion(
        "Overhead",
        (
            Part(
                "server CPU per message against no instrumentation",
                Derived(cpu_change, "the server's CPU seconds per message handled in the closed loop / the uninstrumented server's - 1"),
                "%",
                Utility(5, 100, "5% is within what a deploy changes anyway; doubling the CPU per message doubles the servers at scale"),
                min_diff=10,
                fmt=lambda v: f"{v:+.1f}%",
            ),
            Part(
                "open-model p99 against no instrumentation",
                Derived(p99_change, "p99 latency (from intended send time) of the instrumented server / the uninstrumented one - 1"),
                "%",
                Utility(5, 100, "5% is noise at this load; doubling p99 is felt in token drags"),
                min_diff=25,
                # A p99 over 8 s at 1,000 msg/s rests on its 80 slowest messages: on this 2-core machine the uninstrumented
                # server's own p99 ranged 0.5-2.7 ms between repeats. Where an option's repeats disagree by more than their
                # median, the part ranks nobody and Overhead rests on the server's CPU per message.
                max_spread=1.0,
                fmt=lambda v: f"{v:+.1f}%",
            ),
        ),
        "the same load against the same server with and without the back end, interleaved in each repeat",
    ),
    Criterion(
        "Completeness",
        (
            Part(
                "error events received under the storm",
                Derived(received_share, "received by the back end / raised by the server, the storm with the back end up", exact=True),
                "share",
                Utility(1.0, 0.5, "every error matters while debugging an incident; half of them hides its size"),
                min_diff=0.02,
                fmt=lambda v: f"{v:.1%}",
            ),
        ),
    ),
    Criterion(
        "Back end down",
        (
            Part(
                "probe p99 during the storm with the back end down, against before",
                Derived(down_probe_ratio, "a concurrent probe's echo p99 during / before the storm, the back end stopped", exact=True),
                "x",
                Utility(1.5, 10, "a monitoring outage must not be felt by players; 10x is a stall", log=True),
                min_diff=0.5,
                fmt=lambda v: f"{fmt_num(v)}x",
            ),
            Part(
                "server memory growth over that storm",
                Derived(down_rss_growth, "the server's RSS after / before the storm with the back end down, in MiB", exact=True),
                "MiB",
                Utility(5, 200, "a few MiB of queue is bounded; hundreds is a leak waiting for a long outage"),
                min_diff=5,
                fmt=lambda v: f"{fmt_num(v)} MiB",
            ),
        ),
    ),
    Criterion(
        "Alerting",
        (
            Part(
                "fault to alert firing",
                Derived(
                    alert_seconds, "seconds from each injected fault to its rule firing in Prometheus, median over the faults", exact=True
                ),
                "s",
                Utility(
                    30,
                    300,
                    "within the rules' own windows (test-scaled) is as fast as the rules allow; 5 min is a player's complaint first",
                ),
                min_diff=5,
                fmt=lambda v: f"{fmt_num(v)} s",
            ),
        ),
        "measured only where an alerting back end runs here (Prometheus): not measured for DataDog and Sentry",
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md: a Prometheus server for the two
#: that expose /metrics (the hosted DataDog and Sentry services are not components the app runs). The libraries exist for
#: Node.js too; the measured ones are Python's, on the Python server of Spike 1's tie.
NEEDS = {"prometheus": ("prometheus",), "otel": ("prometheus",), "datadog": (), "sentry": ()}
