"""Spike 4's published browser matrix: what MDN's browser-compat-data says about each transport's APIs.

The data comes from ``@mdn/browser-compat-data`` at the exact version ``compat/package-lock.json`` pins,
installed by :func:`harness.npm.ensure_installed` into the harness's cache (never into the tree), and read
as JSON (its ``data.json``; no Node code runs). Every table this module returns says where it came from
(``source``: ``data: @mdn/browser-compat-data <version>``) and is marked ``measured: False``: these are
published first versions, not something this machine saw. Six browsers: Chrome, Firefox, Safari, Edge,
Chrome Android and Safari on iOS. The two mobile columns are data only, always: no phone is measured here.

:func:`beside_measured` puts the measured matrix of :mod:`spikes.s04_transport.browsers` (Chromium,
Firefox ESR, WebKitGTK) next to the data, one cell per browser, each cell tagged with its source, so a
report can never show a data cell as a measurement (nor the WebKitGTK port as Safari itself).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import npm

__all__ = [
    "COMPAT_DIR",
    "NPM_NAME",
    "PACKAGE",
    "BROWSERS",
    "BROWSER_TITLES",
    "MOBILE",
    "ENGINE_FOR_BROWSER",
    "FEATURES",
    "Feature",
    "pinned_version",
    "source_label",
    "load_data",
    "first_version",
    "feature_row",
    "compat_table",
    "beside_measured",
    "to_markdown",
    "beside_markdown",
]

COMPAT_DIR = Path(__file__).resolve().parent / "compat"
NPM_NAME = "s04-compat"
PACKAGE = "@mdn/browser-compat-data"

#: browser-compat-data's browser ids, in the order the table shows them.
BROWSERS = ("chrome", "firefox", "safari", "edge", "chrome_android", "safari_ios")
BROWSER_TITLES = {
    "chrome": "Chrome",
    "firefox": "Firefox",
    "safari": "Safari",
    "edge": "Edge",
    "chrome_android": "Chrome Android",
    "safari_ios": "Safari on iOS",
}
#: Columns that are only ever data here: no mobile browser runs on this machine.
MOBILE = frozenset({"chrome_android", "safari_ios"})
#: The engine measured here that stands nearest each desktop browser (WebKitGTK is the Safari engine's GTK port,
#: not Safari; Edge is Chromium-based but its own build). A browser absent from this map is never measured.
ENGINE_FOR_BROWSER = {"chrome": "chromium", "firefox": "firefox", "safari": "webkit"}


@dataclass(frozen=True)
class Feature:
    """One row of the table: a browser-compat-data key, its label, and why the spike cares."""

    key: str
    label: str
    transport: str  # sse | poll | ws | all
    why: str


FEATURES: tuple[Feature, ...] = (
    Feature("api.EventSource", "EventSource", "sse", "the SSE client"),
    Feature("api.EventSource.withCredentials", "EventSource withCredentials", "sse", "cookies on a cross-origin stream"),
    Feature("api.EventSource.worker_support", "EventSource in workers", "sse", "one stream shared by a worker"),
    Feature("api.WebSocket", "WebSocket", "ws", "the WebSocket client"),
    Feature("api.WebSocket.protocol_rfc_6455", "WebSocket RFC 6455", "ws", "the protocol servers speak today"),
    Feature("api.WebSocket.worker_support", "WebSocket in workers", "ws", "one socket shared by a worker"),
    Feature("api.WebSocketStream", "WebSocketStream", "ws", "backpressure on a socket (experimental)"),
    Feature("api.fetch", "fetch", "poll", "the long-polling client"),
    Feature("api.XMLHttpRequest", "XMLHttpRequest", "poll", "long polling where fetch is missing"),
    Feature("api.AbortController", "AbortController", "poll", "cancelling a held poll"),
    Feature("api.Response.body", "fetch streaming body", "sse", "SSE over fetch (custom headers, e.g. Authorization)"),
)


def pinned_version(package_dir: str | Path = COMPAT_DIR) -> str:
    """The version of browser-compat-data the committed lock pins."""
    return npm.locked_versions(package_dir, [PACKAGE])[PACKAGE]


def source_label(version: str) -> str:
    """How every cell from the data is labelled: data, with the package and its version."""
    return f"data: {PACKAGE} {version}"


@functools.lru_cache(maxsize=2)
def _read(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_bytes())
    return data


def load_data(package_dir: str | Path = COMPAT_DIR, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The pinned browser-compat-data as one dict (``npm ci`` of the lock once; then a read of its ``data.json``).

    Raises :class:`harness.plugin.NotRunnable` when Node or npm is missing, :class:`harness.npm.NpmError` when the
    install fails, and ``RuntimeError`` when the installed data is not the version the lock pins.
    """
    work = npm.ensure_installed(package_dir, NPM_NAME, cache_dir)
    data = _read(str(work / "node_modules" / "@mdn" / "browser-compat-data" / "data.json"))
    want = pinned_version(package_dir)
    got = data.get("__meta", {}).get("version")
    if got != want:
        raise RuntimeError(f"{PACKAGE} installed in {work} is {got}, the lock pins {want}")
    return data


_TAG = re.compile(r"<[^>]+>")


def _plain(note: str) -> str:
    """A note without its HTML (``<a href>``, ``<code>``): the table is text."""
    return re.sub(r"\s+", " ", _TAG.sub("", note)).strip()


def _notes(statement: Mapping[str, Any]) -> list[str]:
    raw = statement.get("notes") or []
    return [_plain(n) for n in ([raw] if isinstance(raw, str) else raw)]


def _qualifiers(statement: Mapping[str, Any]) -> list[str]:
    """Why a support statement is not plain full support: prefix, other name, flag, partial, removed."""
    out = []
    if statement.get("prefix"):
        out.append(f"prefix {statement['prefix']}")
    if statement.get("alternative_name"):
        out.append(f"as {statement['alternative_name']}")
    if statement.get("flags"):
        out.append("behind a flag")
    if statement.get("partial_implementation"):
        out.append("partial")
    if statement.get("version_removed"):
        out.append(f"removed in {statement['version_removed']}")
    return out


def first_version(support: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """One browser's cell from its support statement(s): the first version of plain support, and every note.

    ``version`` is browser-compat-data's string (``"6"``, ``"4.2"``, ``"≤37"``, ``"preview"``) for the current,
    unprefixed, unflagged, complete support; ``None`` with ``supported: False`` when there is none;
    ``supported: None`` when the data does not know. ``notes`` holds the statements' notes and the qualifiers of
    the other statements (prefixed, partial or removed support), so nothing the data says is dropped.
    """
    statements = [support] if isinstance(support, Mapping) else list(support or [])
    version: str | None = None
    supported: bool | None = False
    notes: list[str] = []
    known = False
    for st in statements:
        added = st.get("version_added")
        quals = _qualifiers(st)
        if added is None:
            notes += _notes(st)
            continue
        known = True
        if added is False:
            notes += _notes(st)
            continue
        if not quals and version is None:
            version = added if isinstance(added, str) else None
            supported = True
            notes += _notes(st)
        else:
            where = f"{added}" + (f"-{st['version_last']}" if st.get("version_last") else "")
            extra = _notes(st)
            notes.append(f"{where}: {', '.join(quals) or 'also'}" + (f" ({'; '.join(extra)})" if extra else ""))
    if not known:
        supported = None
    return {"version": version, "supported": supported, "notes": notes}


def _node(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    compat: Mapping[str, Any] = node["__compat"]
    return compat


def feature_row(data: Mapping[str, Any], feature: Feature, browsers: Sequence[str] = BROWSERS) -> dict[str, Any]:
    """One feature's cells for ``browsers``, with its status (experimental, deprecated) and MDN page."""
    compat = _node(data, feature.key)
    status = compat.get("status") or {}
    return {
        "key": feature.key,
        "label": feature.label,
        "transport": feature.transport,
        "why": feature.why,
        "mdn_url": compat.get("mdn_url"),
        "experimental": bool(status.get("experimental")),
        "deprecated": bool(status.get("deprecated")),
        "cells": {b: first_version(compat.get("support", {}).get(b)) for b in browsers},
    }


def compat_table(data: Mapping[str, Any] | None = None, features: Sequence[Feature] = FEATURES) -> dict[str, Any]:
    """The published matrix: a row per feature, a cell per browser, marked as data from the pinned package.

    ``data`` defaults to :func:`load_data` (the pinned install); a test may pass a small dict of the same shape.
    """
    if data is None:
        data = load_data()
    version = str(data.get("__meta", {}).get("version") or "unknown")
    return {
        "source": source_label(version),
        "package": PACKAGE,
        "version": version,
        "data_timestamp": data.get("__meta", {}).get("timestamp"),
        "measured": False,
        "browsers": list(BROWSERS),
        "titles": {b: BROWSER_TITLES[b] for b in BROWSERS},
        "mobile_measured": False,
        "rows": [feature_row(data, f) for f in features],
    }


#: Which measured field says a transport worked in an engine (see browsers.py): opened and resumed without loss.
_TRANSPORT_OF = {"api.EventSource": "sse", "api.WebSocket": "ws", "api.fetch": "poll"}


def _measured_cell(measured: Mapping[str, Any], engine: str, transport: str) -> dict[str, Any] | None:
    cell = (measured.get("engines", {}).get(engine) or {}).get("transports", {}).get(transport)
    if not cell:
        return None
    engine_info = measured["engines"][engine]
    ok = bool(cell.get("opened")) and bool(cell.get("resumed_without_loss"))
    return {
        "source": "measured",
        "engine": engine,
        "engine_version": engine_info.get("version"),
        "works": ok,
        "opened": cell.get("opened"),
        "resumed_without_loss": cell.get("resumed_without_loss"),
        "note": "WebKitGTK MiniBrowser: the Safari engine's GTK port, not Safari" if engine == "webkit" else None,
    }


def beside_measured(table: Mapping[str, Any], measured: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data table with the measured engines' cells beside it, each cell tagged ``source``.

    For the three transports' main APIs (EventSource, WebSocket, fetch), a desktop browser whose engine ran
    here (Chrome: Chromium, Firefox: Firefox ESR, Safari: WebKitGTK) gets a ``measured`` cell next to its
    ``data`` cell. Edge and the mobile columns only ever get data (``measured: None``): a phone is never
    presented as measured.
    """
    rows = []
    for row in table["rows"]:
        transport = _TRANSPORT_OF.get(row["key"])
        cells = {}
        for b in table["browsers"]:
            data_cell = {"source": table["source"], **row["cells"][b]}
            measured_cell = None
            if measured and transport and b in ENGINE_FOR_BROWSER and b not in MOBILE:
                measured_cell = _measured_cell(measured, ENGINE_FOR_BROWSER[b], transport)
            cells[b] = {"data": data_cell, "measured": measured_cell}
        rows.append({**{k: v for k, v in row.items() if k != "cells"}, "cells": cells})
    return {**{k: v for k, v in table.items() if k != "rows"}, "rows": rows, "measured_source": "measured" if measured else None}


def _cell_text(cell: Mapping[str, Any]) -> str:
    if cell["supported"] is None:
        return "?"
    if not cell["supported"]:
        return "no" + ("*" if cell["notes"] else "")
    return f"{cell['version']}" + ("*" if cell["notes"] else "")


def to_markdown(table: Mapping[str, Any]) -> str:
    """The data table as Markdown, headed by its source; ``*`` marks a cell with notes (listed below it)."""
    head = "| feature | " + " | ".join(f"{BROWSER_TITLES[b]} (data)" for b in table["browsers"]) + " |"
    lines = [f"Source: {table['source']} (published data, not measured here)", "", head, "|" + " --- |" * (1 + len(table["browsers"]))]
    notes = []
    for row in table["rows"]:
        lines.append(f"| {row['label']} | " + " | ".join(_cell_text(row["cells"][b]) for b in table["browsers"]) + " |")
        for b in table["browsers"]:
            for n in row["cells"][b]["notes"]:
                notes.append(f"- {row['label']}, {BROWSER_TITLES[b]}: {n}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


_ENGINE_TITLES = {"chromium": "Chromium", "firefox": "Firefox ESR", "webkit": "WebKitGTK"}


def _measured_text(measured: Mapping[str, Any], engine: str, transport: str) -> str:
    row = measured.get("engines", {}).get(engine) or {}
    if row.get("status") != "measured":
        return str(row.get("status") or "not run")
    cell = _measured_cell(measured, engine, transport)
    if cell is None:
        return "not run"
    return "works" if cell["works"] else ("fails to open" if not cell["opened"] else "lost or duplicated on resume")


def beside_markdown(table: Mapping[str, Any], measured: Mapping[str, Any] | None) -> str:
    """One row per transport: the engines measured here, then the six browsers' published first versions.

    Column headers say which is which (``measured here`` / ``data``); the mobile columns are data only.
    """
    engines = list(ENGINE_FOR_BROWSER.values())
    head = ["transport (API)"]
    for e in engines:
        version = ((measured or {}).get("engines", {}).get(e) or {}).get("version")
        head.append(f"{_ENGINE_TITLES[e]}{' ' + str(version) if version else ''} (measured here)")
    head += [f"{BROWSER_TITLES[b]} (data)" for b in table["browsers"]]
    lines = [
        f"Measured: this machine's engines (WebKitGTK is the Safari engine's GTK port, not Safari). "
        f"Data ({table['source']}): published first versions, not measured here; no mobile browser is measured.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for row in table["rows"]:
        transport = _TRANSPORT_OF.get(row["key"])
        if transport is None:
            continue
        cells = [f"{transport} ({row['label']})"]
        cells += [_measured_text(measured, e, transport) if measured else "not measured" for e in engines]
        cells += [_cell_text(row["cells"][b]) for b in table["browsers"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
