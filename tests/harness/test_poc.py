"""harness.poc: an option's declared POC server, filled in, checked and started the one way."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.plugin import NotRunnable, Option, SpikeLoadError
from harness.poc import REPO_ROOT, PocServer, PocServerError, poc_server, resolve, server_process, url_of
from harness.process import HttpReady, LogReady, TcpReady, group_members
from tests.harness.fakes import FakeSpike
from tests.utils import UNIT

#: A tiny real server: Python's own HTTP server on the port the process layer chooses.
HTTP = PocServer(("{python}", "-m", "http.server", "{port}", "--bind", "{host}"), url="http://{host}:{port}/", ready="http:/")


def option(server: object = HTTP, key: str = "tiny", client: str = "") -> Option:
    return Option(key, f"Option {key}", server=server, client=client)  # type: ignore[arg-type]


# -- placeholders ---------------------------------------------------------------------------------


def test_placeholders_are_filled_from_the_harness_and_the_caller(tmp_path):
    spec = PocServer(
        ("{python}", "-m", "pkg.server", "--option", "{option}", "--pg", "{pg}", "--id", "{server_id}", "--port", "{port}", '{"a": 1}'),
        url="ws://{host}:{port}/{option}",
        env={"DATA": "{repo}/data", "REDIS": "{redis}"},
        cwd="{repo}/spikes",
    )
    server, url = server_process(
        option(spec), tmp_path, values={"pg": "postgresql://x", "redis": "redis://y", "server_id": 3}, env={"SECRET": "s3"}
    )
    assert server.argv == [
        sys.executable,
        "-m",
        "pkg.server",
        "--option",
        "tiny",
        "--pg",
        "postgresql://x",
        "--id",
        "3",
        "--port",
        "{port}",
        '{"a": 1}',
    ]
    assert server.env == {"DATA": f"{REPO_ROOT}/data", "REDIS": "redis://y", "SECRET": "s3"}  # the caller's env added to the declared one
    assert server.cwd == REPO_ROOT / "spikes"
    # {host} and {port} are the process layer's: filled when the server has a port.
    assert url == "ws://{host}:{port}/tiny"
    server.port = 4321
    assert server.command()[-2] == "4321" and url_of(server, url) == "ws://127.0.0.1:4321/tiny"


def test_the_defaults_name_log_and_run_from_the_repository(tmp_path):
    server, url = server_process(option(HTTP), tmp_path)
    assert server.name == "Option tiny POC server" and server.log_path == tmp_path / "server.log"
    assert server.cwd == REPO_ROOT and (REPO_ROOT / "harness" / "poc.py").is_file()
    assert server.grace == 5.0 and server.port is None and server.cpus is None
    named, _ = server_process(option(HTTP), tmp_path, name="s06 native server 1", log_name="server-1.log", grace=20.0, cpus=[0])
    assert (named.name, named.log_path, named.grace, named.cpus) == ("s06 native server 1", tmp_path / "server-1.log", 20.0, frozenset({0}))


@pytest.mark.parametrize(
    ("spec", "missing"),
    [
        (PocServer(("{python}", "server.py", "--pg", "{pg}")), "{pg}"),
        (PocServer(("{python}", "server.py"), env={"REDIS_URL": "{redis}"}), "{redis}"),
        (PocServer(("{python}", "server.py"), url="ws://{host}:{port}/{room}"), "{room}"),
        (PocServer(("{python}", "server.py"), cwd="{checkout}/poc"), "{checkout}"),
    ],
)
def test_an_unfilled_placeholder_is_an_error_naming_it_before_anything_starts(tmp_path, spec, missing):
    with pytest.raises(PocServerError, match=r"option 'tiny'.*uses .*" + missing.replace("{", r"\{").replace("}", r"\}")):
        server_process(option(spec), tmp_path)
    assert not (tmp_path / "server.log").exists()


def test_every_unfilled_placeholder_is_named_at_once(tmp_path):
    spec = PocServer(("{python}", "s.py", "--pg", "{pg}", "--redis", "{redis}", "--id", "{server_id}"))
    with pytest.raises(PocServerError) as exc:
        server_process(option(spec), tmp_path, values={"redis": ""})
    assert "{pg}, {server_id}" in str(exc.value) and "{redis}" not in str(exc.value)


def test_a_url_needs_a_started_server(tmp_path):
    server, url = server_process(option(HTTP), tmp_path)
    with pytest.raises(PocServerError, match="start it first"):
        url_of(server, url)


# -- the declaration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "probe"),
    [
        ("tcp", TcpReady()),
        ("http:/health", HttpReady("/health")),
        ("http:", HttpReady("/")),
        ("log:READY port=\\d+", LogReady("READY port=\\d+")),
    ],
)
def test_ready_rules_become_probes(ready, probe):
    assert PocServer(("srv",), ready=ready).probe() == probe


@pytest.mark.parametrize("ready", ["", "http", "http:health", "log", "log:", "log:([", "udp:53", "tcp:8000", "HTTP:/", "ready"])
def test_a_bad_ready_rule_is_refused_when_declared(ready):
    with pytest.raises(PocServerError, match="ready must be"):
        PocServer(("srv",), ready=ready)


def test_a_server_needs_a_command():
    with pytest.raises(PocServerError, match="argv is empty"):
        PocServer(())


def test_a_factory_is_called_and_its_not_runnable_propagates(tmp_path):
    calls = []

    def built() -> PocServer:
        calls.append(1)
        return HTTP

    assert resolve(option(built)) is HTTP and calls == [1]

    def needs_node() -> PocServer:
        raise NotRunnable("node is not installed (install: apt-get install -y nodejs)")

    with pytest.raises(NotRunnable, match="node is not installed"):
        server_process(option(needs_node), tmp_path)
    with pytest.raises(NotRunnable), poc_server(option(needs_node), tmp_path):
        pass


def test_an_option_without_a_server_or_with_a_factory_returning_something_else_is_an_error(tmp_path):
    with pytest.raises(PocServerError, match="declares no POC server"):
        resolve(Option("codec", "A codec"))
    with pytest.raises(PocServerError, match="returned str, not a PocServer"):
        resolve(option(lambda: "python server.py"))


# -- starting one -----------------------------------------------------------------------------------


def test_poc_server_starts_the_declared_server_and_stops_it(tmp_path):
    with poc_server(option(HTTP), tmp_path, ready_timeout=30 * UNIT, grace=5 * UNIT) as (server, url):
        assert server.alive and server.port is not None
        assert url == f"http://127.0.0.1:{server.port}/"
        with urllib.request.urlopen(url, timeout=10 * UNIT) as reply:
            assert reply.status == 200
        pid = server.pid
    assert not server.alive and server.returncode is not None
    assert pid is not None and group_members(pid) == []  # its whole process group is gone
    assert "start Option tiny POC server on 127.0.0.1" in (tmp_path / "server.log").read_text()


def test_poc_server_stops_the_server_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="scenario failed"), poc_server(option(HTTP), tmp_path, ready_timeout=30 * UNIT) as (server, _):
        raise RuntimeError("scenario failed")
    assert not server.alive


def test_starting_a_poc_server_imports_no_service_browser_or_load_module(tmp_path):
    code = f"""
import json
import sys
from pathlib import Path
from harness.plugin import Option
from harness.poc import PocServer, poc_server
spec = PocServer(("{{python}}", "-m", "http.server", "{{port}}", "--bind", "{{host}}"), url="http://{{host}}:{{port}}/", ready="http:/")
with poc_server(Option("tiny", "Tiny", server=spec), Path({str(tmp_path)!r}), ready_timeout={30 * UNIT}) as (server, url):
    assert server.alive, url
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "harness")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60 * UNIT, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "harness.poc" in loaded and "harness.process" in loaded
    assert [m for m in loaded if m.split(".")[1:2] in (["services"], ["browser"], ["load"], ["faults"], ["runner"])] == [], loaded


# -- declared on the spike --------------------------------------------------------------------------


class _Declared(FakeSpike):
    pass


@pytest.mark.parametrize("server", [HTTP, lambda: HTTP, None])
def test_spike_validate_accepts_a_poc_server_a_factory_or_none(server):
    spike = _Declared()
    spike.options = (option(server, "a"), *FakeSpike.options[1:])
    spike.validate()


@pytest.mark.parametrize("server", ["python -m server --port {port}", ("{python}", "server.py"), 8000])
def test_spike_validate_rejects_a_server_that_is_neither_a_poc_server_nor_a_function(server):
    spike = _Declared()
    spike.options = (option(server, "a"), *FakeSpike.options[1:])
    with pytest.raises(SpikeLoadError, match=r"spike 42: option 'a': server must be a PocServer or a function returning one"):
        spike.validate()


def _with_client(client: str) -> FakeSpike:
    spike = _Declared()
    spike.options = tuple(dataclasses.replace(o, client=client if o.key == "a" else "") for o in FakeSpike.options)
    return spike


def test_the_cli_refuses_an_unknown_client_adapter_naming_the_spike(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_registered", lambda: {42: _with_client("carrier-pigeon")})
    with pytest.raises(SpikeLoadError) as exc:
        cli._spikes()
    assert "spike 42 (fake), option 'a': unknown client adapter 'carrier-pigeon'" in str(exc.value)
    assert "harness.load.clients.register" in str(exc.value)
    # Through the command line: refused when the spikes are loaded, one message, before anything runs.
    for args in (("run", "42", "--quick", "--out", str(tmp_path)), ("list", "--out", str(tmp_path))):
        res = CliRunner().invoke(cli.app, list(args))
        assert res.exit_code == 4 and "Traceback" not in res.output, res.output
        assert "spike 42 (fake), option 'a': unknown client adapter 'carrier-pigeon'" in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists()


def test_the_cli_accepts_a_registered_client_adapter(monkeypatch):
    from harness.load.clients import transports

    known = transports()[0]
    monkeypatch.setattr(cli, "_registered", lambda: {42: _with_client(known)})
    assert cli._spikes()[42].option("a").client == known


# -- the spikes' own declarations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "values"),
    [
        ("spikes.s02_state_sync", {}),
        ("spikes.s05_auth.plugin", {}),
        ("spikes.s06_scalability", {"pg": "postgresql://h/db", "redis": "", "server_id": 1}),
    ],
)
def test_spikes_2_5_and_6_declare_servers_their_scenarios_can_start(module, values, tmp_path):
    import importlib

    spike = importlib.import_module(module).spike
    for opt in spike.options:
        server, url = server_process(opt, tmp_path, values=values)
        # A Python POC runs on this interpreter; Spike 6's Node options run its SvelteKit server on node.
        runtime = sys.executable if not opt.key.startswith("node") else shutil.which("node")
        assert server.argv[0] == runtime and "{port}" in server.argv and url.count("{port}") == 1
        assert Path(server.cwd or REPO_ROOT).is_dir() and opt.client in ("", "ws", "socketio-raw")
    if values:  # what Spike 6's deployment gives is needed: without it, the error names it
        with pytest.raises(PocServerError, match=r"\{pg\}, \{redis\}, \{server_id\}"):
            server_process(spike.options[0], tmp_path)
