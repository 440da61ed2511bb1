"""Spike 4's bad-input scenario against its three real servers, its table from stored facts, and the hostile frame battery.

Every bad resume point (malformed, in the future, older than the history, of another
epoch) and every hostile publish body gets a clear answer, the server keeps serving a
fresh client and logs no traceback; the table says so from the stored facts alone.
"""

from __future__ import annotations

import pytest

from harness import frames
from harness.plugin import Option, ScenarioContext
from harness.results import RunResult, ScenarioResult, check_facts
from spikes.s04_transport import badinput, poc, robustness
from tests.utils import UNIT

OPTIONS = ("sse", "longpoll", "ws")


def _option(key: str) -> Option:
    return Option(
        key, {"sse": "SSE", "longpoll": "Long polling", "ws": "WebSocket"}[key], server=poc.server(badinput.TRANSPORTS[key]), client=key
    )


def _run(*results: ScenarioResult) -> RunResult:
    options = list(dict.fromkeys(r.option for r in results))
    return RunResult("r", {"number": 4}, "quick", "t", "", "", 1.0, {}, {"options": options}, {}, list(results))


@pytest.mark.slow  # a real server per option
@pytest.mark.parametrize("key", OPTIONS)
def test_every_bad_input_gets_a_clear_answer_and_the_server_keeps_serving(key, tmp_path):
    ctx = ScenarioContext(_option(key), {"timeout_s": 3 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = badinput.run_bad_input(ctx)
    check_facts(out.facts)  # storable as it is
    measured = {m.name: m.samples for m in out.measurements}
    cases = {c["case"]: c for c in out.facts["cases"]}
    assert measured["bad_input_unclear"] == [0], [c for c in cases.values() if not c["clear"]]
    assert measured["bad_input_tracebacks"] == [0]
    assert all(c["still_serving"] and not c["traceback"] for c in cases.values()), cases
    assert out.facts["exit_code"] == 0 and out.facts["epoch"]
    # Each resume point the history cannot honour: a reset with the protocol's reason, then the same connection goes on.
    for case in badinput.RESUME_CASES:
        got = cases[case.name]
        if case.reason is not None:
            assert (got["kind"], got["reason"], got["then_live"]) == ("reset", case.reason, True), got
        elif key == "ws":
            assert got["kind"] == "error", got
        else:
            assert got["kind"] == ("joined" if case.text == "" else "error"), got
    posts = [c for c in cases.values() if c["group"] == "send"]
    if key == "ws":
        assert not posts  # it publishes on its socket: the frame battery's
        assert measured["bad_input_cases"] == [len(badinput.RESUME_CASES)]
    else:
        assert len(posts) == len(badinput.send_cases())
        assert all(c["as_specified"] for c in out.facts["cases"]), [c for c in out.facts["cases"] if not c["as_specified"]]
        assert cases["POST /send: 10 MB"]["status"] == 413
    # The table renders from what was stored.
    table = badinput.table(_run(ScenarioResult(badinput.SCENARIO, key, "ok", facts=[out.facts])), {key: "Mine"})
    assert table is not None and table.headers == ["Case", "Mine"]
    assert table.rows[-1] == ["**clear answers**", f"{len(cases)} of {len(cases)}"]
    assert not any("**" in row[1] for row in table.rows[:-1]), table.rows


def _case(name: str, group: str = "resume", **fields: object) -> dict[str, object]:
    base = {"case": name, "group": group, "status": None, "error": "", "reason": "", "close_code": None, "then_live": None}
    return base | {"replayed": 0, "clear": True, "as_specified": True, "still_serving": True, "traceback": False} | fields


def test_the_table_says_each_answer_in_a_few_words_and_flags_what_falls_short():
    sse = {
        "transport": "sse",
        "history": 5,
        "published_first": 12,
        "cases": [
            _case('resume "abc"', kind="error", status=400, error="resume point must be EPOCH-N or a non-negative integer N, not 'abc'"),
            _case("resume older than the history (E-1)", kind="reset", status=200, reason="history", then_live=True),
            _case("resume in the future (E-1000000)", kind="joined", status=200, then_live=True, clear=False, as_specified=False),
            _case("POST /send: 10 MB", "send", kind="error", status=413, error="body of 10485842 bytes is over the limit of 65536"),
            _case("POST /send: null", "send", kind="server error", status=500, clear=False, still_serving=False, traceback=True),
        ],
    }
    ws = {
        "transport": "ws",
        "history": 5,
        "published_first": 12,
        "cases": [
            _case('resume "abc"', kind="error", error="resume point must be a non-negative integer, not str abc", close_code=1008),
            _case(
                "resume older than the history (E-1)",
                kind="reset",
                reason="history",
                then_live=False,
                as_specified=False,
                expected="reset (history), then live",
            ),
            _case("resume in the future (E-1000000)", kind="silence", clear=False),
        ],
    }
    run = _run(
        ScenarioResult(badinput.SCENARIO, "sse", "ok", facts=[sse]),
        ScenarioResult(badinput.SCENARIO, "ws", "ok", facts=[ws]),
        ScenarioResult(badinput.SCENARIO, "longpoll", "failed", reason="it crashed"),
    )
    table = badinput.table(run, {"sse": "SSE", "ws": "WebSocket", "longpoll": "Long polling"})
    assert table is not None
    assert table.headers == ["Case", "SSE", "WebSocket", "Long polling"]
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows['resume "abc"'] == ["400 error: bad resume point", "error: bad resume point, close 1008", "failed"]
    assert rows["resume older than the history (E-1)"][:2] == [
        "reset (history), then live",
        "reset (history), **no live event after** (protocol: reset (history), then live)",
    ]
    assert rows["resume in the future (E-1000000)"][:2] == ["**unclear**: joined, no reset, then live", "**unclear**: no answer (hang)"]
    assert rows["POST /send: 10 MB"][:2] == ["413 error: too big", "n/a (publishes on its socket)"]
    assert rows["POST /send: null"][0] == "**unclear**: 500 server error; **not serving after**; **traceback in log**"
    assert rows["**clear answers**"] == ["3 of 5", "2 of 3", "-"]
    assert "5 broadcasts" in table.note and "12 published" in table.note


def test_no_table_without_the_scenario():
    assert badinput.table(_run(ScenarioResult("latency", "sse", "ok")), {}) is None


def test_the_frame_battery_applies_to_the_websocket_option_only():
    assert robustness.SCENARIO.applies_to("ws")
    assert not robustness.SCENARIO.applies_to("sse") and not robustness.SCENARIO.applies_to("longpoll")


@pytest.mark.slow  # a real server
def test_the_websocket_server_passes_the_hostile_frame_battery_through_the_scenario(tmp_path):
    ctx = ScenarioContext(_option("ws"), {"timeout_s": 3 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = robustness.SCENARIO.run(ctx)
    stored = out.facts[frames.FACT]
    failed = [(r["case"], r["answer_text"], r["failures"]) for r in stored["results"] if not r["passed"]]
    assert not failed, failed
    assert stored["log_checked"] is True
    assert {r["case"] for r in stored["results"]} | set(out.facts.get("left_out", {})) >= set(frames.CASE_NAMES)
    table = frames.robustness_table(_run(ScenarioResult("robustness", "ws", "ok", facts=[out.facts])), {"ws": "WebSocket"})
    assert table is not None and table.rows[-1] == ["**passed**", f"{len(stored['results'])} of {len(stored['results'])}"]


#: A long-polling server that gets bad input wrong in each way the scenario must catch: a 500 with a traceback in its
#: log for "abc", a hang for "-1", a silent gap (no reset) for a resume point older than its history or in the future.
_BROKEN_SERVER = """
import asyncio, sys, traceback
from aiohttp import web
held = []

async def send(request):
    msg = await request.json()
    held.append({**msg, "n": len(held) + 1, "e": "e1"})
    return web.json_response({"op": "ack", "c": msg["c"], "seq": msg["seq"], "n": len(held), "e": "e1"})

async def poll(request):
    cursor = request.query.get("cursor")
    if cursor is None:
        return web.json_response({"op": "joined", "n": len(held), "events": [], "cursor": f"e1-{len(held)}"})
    if cursor == "abc":
        traceback.print_stack()
        print("Traceback (most recent call last): the cursor broke me", file=sys.stderr, flush=True)
        return web.Response(status=500, text="oops")
    if cursor == "-1":
        await asyncio.sleep(3600)
    n = int(cursor.rpartition("-")[2]) if cursor.rpartition("-")[2].isdigit() else 0
    return web.json_response({"events": [e for e in held if e["n"] > n], "cursor": f"e1-{len(held)}"})

app = web.Application()
app.router.add_post("/send", send)
app.router.add_get("/poll", poll)
print(f"READY port={sys.argv[1]}", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@pytest.mark.slow  # a real (broken) server
def test_a_server_that_crashes_hangs_or_leaves_a_silent_gap_is_caught(tmp_path):
    from harness.poc import PocServer

    script = tmp_path / "broken.py"
    script.write_text(_BROKEN_SERVER)
    broken = Option(
        "longpoll", "Broken", server=PocServer(("{python}", str(script), "{port}"), url="http://{host}:{port}", ready="log:READY")
    )
    ctx = ScenarioContext(broken, {"timeout_s": 1 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = badinput.run_bad_input(ctx)
    cases = {c["case"]: c for c in out.facts["cases"]}
    abc, hang = cases['resume "abc"'], cases['resume "-1"']
    assert (abc["kind"], abc["status"], abc["clear"], abc["traceback"]) == ("server error", 500, False, True)
    assert (hang["kind"], hang["clear"]) == ("silence", False)
    for name in ("resume older than the history (E-1)", "resume in the future (E-1000000)", "resume of another epoch (other-3)"):
        assert (cases[name]["kind"], cases[name]["clear"]) == ("joined", False), cases[name]
    assert all(c["still_serving"] for c in cases.values())
    measured = {m.name: m.samples[0] for m in out.measurements}
    assert measured["bad_input_tracebacks"] >= 1 and measured["bad_input_unclear"] >= 5
    table = badinput.table(_run(ScenarioResult(badinput.SCENARIO, "longpoll", "ok", facts=[out.facts])))
    assert table is not None
    cells = {r[0]: r[1] for r in table.rows}
    assert cells['resume "abc"'] == "**unclear**: 500 server error; **traceback in log**"
    assert cells['resume "-1"'] == "**unclear**: no answer (hang)"
    assert cells["resume in the future (E-1000000)"] == "**unclear**: joined, no reset, then live"
