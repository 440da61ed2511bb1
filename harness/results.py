"""Stored runs: the result schema, its format history, atomic writes, validated loads.

One JSON file per run under ``results/runs/``. Documents are rendered from these
files only, so every figure in a document can be traced back to raw samples.

``load`` upgrades an older file in memory, one step per version (the file on
disk is left as it is), then checks every field that scoring and rendering
read. A corrupt file therefore fails here, with one line naming the file and
the field, and never later as a traceback in a spike's ``score``. ``scan_runs``
reads a folder and returns the bad files as errors beside the good runs, so one
broken file does not hide all the others. The runner checks each step's output
with the same rules (``check_measurement``, ``check_facts``) before it stores a
run, so it never writes a file that ``load`` would refuse.

Format history. To change the schema: bump ``FORMAT_VERSION``, add
``_upgrade_N_to_M`` to ``_UPGRADES``, commit a sample of the old format as
``tests/harness/formats/vN.json`` (it must keep loading), and add a line here.
``load`` refuses versions it does not know rather than guessing.

* 1 (2026-11-25): first format. A run holds the spike (number, slug, title,
  source hash), profile (``full``/``quick``), author, start/finish times and
  measured duration, machine metadata, parameters (repeat, weights, options,
  scenarios, interrupted), measured code complexity per option, and per
  scenario x option the status (``ok``, ``failed``, ``not_run``,
  ``interrupted``), the reason, the parameters, raw samples per repeat for
  every measurement, measured facts per repeat, and the seconds each repeat
  took.
* 2 (2026-11-26): adds ``completion`` (``complete``: every scenario x option
  ran; ``partial``: the user chose a subset; ``interrupted``: Ctrl-C or a crash
  stopped it), ``source`` (the commit the run was made from, whether the tree
  had uncommitted changes and which paths, whether ``--allow-dirty`` was given)
  and ``budget`` (the spike's budget in minutes for the profile, and whether the
  run went over). ``spike.source_hash`` covers more files, so a format-1 run
  shows as stale. Upgrade from 1: completion is ``interrupted`` if
  ``parameters.interrupted`` else ``complete``; source comes from
  ``machine.commit``/``machine.dirty`` with no paths and ``allow_dirty`` equal
  to ``dirty`` (format 1 stored dirty runs without asking); budget from
  ``harness/budgets.toml`` and ``duration_s``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from harness.budget import table_minutes
from harness.stats import repeat_values

__all__ = [
    "FORMAT_VERSION",
    "STATUSES",
    "COMPLETIONS",
    "ResultsError",
    "ScoringError",
    "MeasurementRecord",
    "ScenarioResult",
    "RunResult",
    "save",
    "load",
    "upgrade",
    "scan_runs",
    "check_measurement",
    "check_facts",
    "runs_by_spike",
]

FORMAT_VERSION = 2
STATUSES = ("ok", "failed", "not_run", "interrupted")
COMPLETIONS = ("complete", "partial", "interrupted")
BETTER = ("lower", "higher", None)


class ResultsError(Exception):
    """A results file is missing, malformed, or of a format version we do not know."""


class ScoringError(ResultsError):
    """A stored run loads, but its spike cannot score or render it: a measurement or fact the spike reads is missing or malformed.

    Raised by the report layer around the spike's ``score()`` and ``report()``;
    a ``ResultsError``, so the CLI shows one line and exits 4.
    """


@dataclass
class MeasurementRecord:
    """Raw samples of one metric: ``repeats[k]`` holds the samples of repeat k."""

    name: str
    unit: str
    tags: dict[str, str]
    better: str | None
    repeats: list[list[float]] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return [s for rep in self.repeats for s in rep]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def repeat_medians(self) -> list[float]:
        """One figure per repeat (its median), empty repeats left out: the unit of evidence of ``harness.stats``."""
        return repeat_values(self.repeats)


@dataclass
class ScenarioResult:
    """One scenario run against one option, over all repeats."""

    scenario: str
    option: str
    status: str
    reason: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    measurements: list[MeasurementRecord] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)
    durations_s: list[float] = field(default_factory=list)

    def measurement(self, name: str, **tags: str) -> MeasurementRecord:
        for m in self.measurements:
            if m.name == name and all(m.tags.get(k) == v for k, v in tags.items()):
                return m
        where = ", ".join(f"{k}={v}" for k, v in tags.items())
        raise KeyError(f"scenario {self.scenario!r}, option {self.option!r} has no measurement {name!r}" + (f" [{where}]" if where else ""))

    def median(self, name: str, **tags: str) -> float | None:
        """The median of a metric's raw samples, or ``None`` when this step has no such metric."""
        try:
            return self.measurement(name, **tags).median
        except KeyError:
            return None

    def spread(self, name: str, **tags: str) -> tuple[float, float] | None:
        """Min and max of a metric's per-repeat medians (for charts' whiskers); ``None`` with fewer than two repeats."""
        try:
            per_repeat = self.measurement(name, **tags).repeat_medians()
        except KeyError:
            return None
        return (min(per_repeat), max(per_repeat)) if len(per_repeat) >= 2 else None

    def find(self, name: str) -> list[MeasurementRecord]:
        return [m for m in self.measurements if m.name == name]

    @property
    def fact(self) -> dict[str, Any]:
        """The facts of the last repeat (facts are expected to repeat exactly)."""
        return self.facts[-1] if self.facts else {}


@dataclass
class RunResult:
    """One run of one spike: everything a document needs, and nothing computed by hand.

    ``completion``, ``source`` and ``budget`` (format 2) should be passed by
    whoever builds a run; left empty, they are derived the way a format-1 file
    is upgraded, so older callers still produce a valid record.
    """

    run_id: str
    spike: dict[str, Any]
    profile: str
    author: str
    started_at: str
    finished_at: str
    duration_s: float
    machine: dict[str, Any]
    parameters: dict[str, Any]
    complexity: dict[str, dict[str, Any]]
    scenarios: list[ScenarioResult]
    harness: dict[str, Any] = field(default_factory=dict)
    completion: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: Path | None = field(default=None, compare=False)
    #: The format version of the file this run was loaded from, when ``load`` upgraded it (not stored).
    upgraded_from: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.completion:
            self.completion = _completion_v1(self.parameters)
        if not self.source:
            self.source = _source_v1(self.machine)
        if not self.budget:
            self.budget = _budget_v1(self.spike.get("number"), self.profile, self.duration_s)

    def result(self, scenario: str, option: str) -> ScenarioResult | None:
        for sr in self.scenarios:
            if sr.scenario == scenario and sr.option == option:
                return sr
        return None

    def ok(self, scenario: str, option: str) -> ScenarioResult | None:
        sr = self.result(scenario, option)
        return sr if sr is not None and sr.status == "ok" else None

    def median(self, scenario: str, option: str, name: str, **tags: str) -> float | None:
        """The median of a metric's raw samples, or ``None`` when that step did not run ok or has no such metric."""
        sr = self.ok(scenario, option)
        return None if sr is None else sr.median(name, **tags)

    def spread(self, scenario: str, option: str, name: str, **tags: str) -> tuple[float, float] | None:
        """Min-max of the per-repeat medians of an ok step's metric, or ``None`` (see :meth:`ScenarioResult.spread`)."""
        r = self.ok(scenario, option)
        return r.spread(name, **tags) if r else None

    @property
    def options(self) -> list[str]:
        return list(self.parameters.get("options", []))

    @property
    def weights(self) -> dict[str, int]:
        return dict(self.parameters.get("weights", {}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d.pop("upgraded_from")
        return {"format_version": d.pop("format_version"), **d}

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> RunResult:
        """Upgrade ``data`` to the current format if it is older, validate it, and build the run."""
        data = upgrade(data, where)
        _validate(data, where)
        scen = [
            ScenarioResult(
                scenario=s["scenario"],
                option=s["option"],
                status=s["status"],
                reason=s["reason"] or "",
                params=s["params"],
                measurements=[MeasurementRecord(**m) for m in s["measurements"]],
                facts=s["facts"],
                durations_s=s["durations_s"],
            )
            for s in data["scenarios"]
        ]
        fields = {k: v for k, v in data.items() if k not in ("scenarios", "upgraded_from")}
        run = cls(scenarios=scen, **fields)
        run.upgraded_from = data.get("upgraded_from")
        return run


# -- format history ------------------------------------------------------------------------------------------------------------


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _completion_v1(parameters: Any) -> str:
    return "interrupted" if _as_dict(parameters).get("interrupted") else "complete"


def _source_v1(machine: Any) -> dict[str, Any]:
    m = _as_dict(machine)
    dirty = bool(m.get("dirty"))
    return {"commit": m.get("commit"), "dirty": dirty, "dirty_paths": [], "allow_dirty": dirty}


def _budget_v1(number: Any, profile: Any, duration_s: Any) -> dict[str, Any]:
    minutes = table_minutes(number, profile == "quick") if _is_int(number) else None
    over = minutes is not None and _is_num(duration_s) and duration_s > minutes * 60
    return {"minutes": minutes, "over": over}


def _upgrade_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: derive completion, source and budget from what format 1 stored."""
    out = dict(data)
    out["completion"] = _completion_v1(data.get("parameters"))
    out["source"] = _source_v1(data.get("machine"))
    out["budget"] = _budget_v1(_as_dict(data.get("spike")).get("number"), data.get("profile"), data.get("duration_s"))
    out["format_version"] = 2
    return out


#: ``_UPGRADES[n]`` turns a format-n record into a format-(n+1) record.
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_1_to_2}


def upgrade(data: Any, where: str = "results") -> Any:
    """``data`` in the current format: older formats go through every upgrade step in turn.

    The returned dict carries ``upgraded_from`` (the original version) when a
    step ran; unknown or newer versions are refused with one line.
    """
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: top level is {type(data).__name__}, expected an object")
    version = data.get("format_version")
    if version is None:
        raise ResultsError(f"{where}: no format_version; not a realtime-spikes results file")
    if not _is_int(version):
        raise ResultsError(f"{where}: format_version is {_show(version)}, expected an integer")
    if version > FORMAT_VERSION:
        raise ResultsError(
            f"{where}: format_version {version} is not supported: this tool reads formats 1 to {FORMAT_VERSION}; "
            "a newer realtime-spikes wrote it, so update this checkout"
        )
    if version < FORMAT_VERSION and version not in _UPGRADES:
        raise ResultsError(f"{where}: format_version {version} is not supported: this tool reads formats 1 to {FORMAT_VERSION}")
    original = version
    while version < FORMAT_VERSION:
        data = _UPGRADES[version](data)
        assert data["format_version"] == version + 1, f"upgrade step from format {version} did not move one version"
        version = data["format_version"]
    if original != FORMAT_VERSION:
        data = {**data, "upgraded_from": original}
    return data


# -- validation ----------------------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    """A value as the error line shows it: JSON for scalars (so ``"30"`` reads as a string), a kind for containers."""
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an empty list" if not v else "a list"
    try:
        text = json.dumps(v, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Checker:
    """Type checks that raise ``ResultsError`` naming the file and the field path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def _error(self, text: str) -> ResultsError:
        return ResultsError(f"{self.where}: {text}" if self.where else text)

    def fail(self, path: str, value: Any, expected: str) -> NoReturn:
        raise self._error(f"{path} is {_show(value)}, expected {expected}")

    def problem(self, path: str, what: str) -> NoReturn:
        raise self._error(f"{path} {what}")

    def get(self, obj: dict[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            self.problem(_key(path, key), "is missing")
        return obj[key]

    def exact_keys(self, obj: dict[str, Any], keys: tuple[str, ...], path: str) -> None:
        for k in keys:
            self.get(obj, k, path)
        unknown = sorted(set(obj) - set(keys))
        if unknown:
            self.problem(path, f"has unknown field(s) {', '.join(unknown)}; expected exactly {', '.join(keys)}")

    def obj(self, v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(path, v, "an object")
        return v

    def lst(self, v: Any, path: str, *, nonempty: bool = False) -> list[Any]:
        if not isinstance(v, list):
            self.fail(path, v, "a list")
        if nonempty and not v:
            self.fail(path, v, "a non-empty list")
        return v

    def text(self, v: Any, path: str, *, nullable: bool = False, nonempty: bool = False) -> None:
        if v is None and nullable:
            return
        if not isinstance(v, str) or (nonempty and not v):
            self.fail(path, v, ("a non-empty string" if nonempty else "a string") + (" or null" if nullable else ""))

    def integer(self, v: Any, path: str, *, minimum: int | None = None, nullable: bool = False) -> None:
        if v is None and nullable:
            return
        if not _is_int(v) or (minimum is not None and v < minimum):
            self.fail(path, v, ("an integer" if minimum is None else f"an integer >= {minimum}") + (" or null" if nullable else ""))

    def number(self, v: Any, path: str, *, minimum: float | None = None, nullable: bool = False) -> None:
        if v is None and nullable:
            return
        if not _is_num(v) or (minimum is not None and v < minimum):
            self.fail(
                path, v, ("a finite number" if minimum is None else f"a finite number >= {minimum:g}") + (" or null" if nullable else "")
            )

    def boolean(self, v: Any, path: str, *, nullable: bool = False) -> None:
        if v is None and nullable:
            return
        if not isinstance(v, bool):
            self.fail(path, v, "true or false" + (" or null" if nullable else ""))

    def one_of(self, v: Any, path: str, allowed: tuple[Any, ...]) -> None:
        if v not in allowed or isinstance(v, bool):
            self.fail(path, v, "one of " + ", ".join(json.dumps(a) for a in allowed))

    def timestamp(self, v: Any, path: str) -> None:
        self.text(v, path)
        try:
            datetime.fromisoformat(v)
        except ValueError:
            self.fail(path, v, "an ISO 8601 time such as 2026-11-25T10:00:00+00:00")

    def str_map(self, v: Any, path: str) -> None:
        for k, x in self.obj(v, path).items():
            self.text(x, _key(path, k))


_TOP_LEVEL = (
    "format_version",
    "run_id",
    "spike",
    "profile",
    "author",
    "started_at",
    "finished_at",
    "duration_s",
    "machine",
    "parameters",
    "complexity",
    "scenarios",
    "harness",
    "completion",
    "source",
    "budget",
)
_SCENARIO_KEYS = ("scenario", "option", "status", "reason", "params", "measurements", "facts", "durations_s")
_MEASUREMENT_KEYS = ("name", "unit", "tags", "better", "repeats")
_COMPLEXITY_KEYS = ("files", "loc", "dependencies", "dependency_count")


def _validate(data: dict[str, Any], where: str) -> None:
    """Check every field that scoring, rendering and ``compare`` read; raise ``ResultsError`` naming the first bad one.

    Fields are checked in file order, the format-1 ones before those an upgrade
    derives from them, so an error names the field to fix in the file itself.
    """
    c = _Checker(where)
    unknown = sorted(set(data) - set(_TOP_LEVEL) - {"upgraded_from"})
    if unknown:
        raise ResultsError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for key in _TOP_LEVEL:
        c.get(data, key, "")
    c.integer(data["format_version"], "format_version")
    c.text(data["run_id"], "run_id", nonempty=True)

    spike = c.obj(data["spike"], "spike")
    c.integer(c.get(spike, "number", "spike"), "spike.number", minimum=1)
    for k in ("slug", "title", "source_hash"):
        c.text(c.get(spike, k, "spike"), f"spike.{k}")
    if data["profile"] not in ("full", "quick"):
        raise ResultsError(f"{where}: profile {data['profile']!r} is neither 'full' nor 'quick'")
    c.text(data["author"], "author")
    c.timestamp(data["started_at"], "started_at")
    c.timestamp(data["finished_at"], "finished_at")
    c.number(data["duration_s"], "duration_s", minimum=0)

    _validate_machine(c, data["machine"])
    options = _validate_parameters(c, data["parameters"])
    _validate_complexity(c, data["complexity"], options)
    for i, s in enumerate(c.lst(data["scenarios"], "scenarios")):
        _validate_scenario(c, s, f"scenarios[{i}]")
    harness = c.obj(data["harness"], "harness")
    c.number(c.get(harness, "measured_s", "harness"), "harness.measured_s", minimum=0)
    overhead = c.get(harness, "overhead_fraction", "harness")
    c.number(overhead, "harness.overhead_fraction", minimum=0)

    c.one_of(data["completion"], "completion", COMPLETIONS)
    source = c.obj(data["source"], "source")
    c.exact_keys(source, ("commit", "dirty", "dirty_paths", "allow_dirty"), "source")
    c.text(source["commit"], "source.commit", nullable=True)
    c.boolean(source["dirty"], "source.dirty")
    for j, p in enumerate(c.lst(source["dirty_paths"], "source.dirty_paths")):
        c.text(p, f"source.dirty_paths[{j}]")
    c.boolean(source["allow_dirty"], "source.allow_dirty")
    budget = c.obj(data["budget"], "budget")
    c.exact_keys(budget, ("minutes", "over"), "budget")
    c.number(budget["minutes"], "budget.minutes", minimum=0, nullable=True)
    c.boolean(budget["over"], "budget.over")


def _validate_machine(c: _Checker, value: Any) -> None:
    """The machine fields that documents print and ``compare`` matches on."""
    m = c.obj(value, "machine")
    c.text(c.get(m, "cpu_model", "machine"), "machine.cpu_model")
    c.integer(c.get(m, "cpu_count_logical", "machine"), "machine.cpu_count_logical", minimum=1, nullable=True)
    c.integer(c.get(m, "memory_total_bytes", "machine"), "machine.memory_total_bytes", minimum=0)
    c.text(c.get(m, "os", "machine"), "machine.os")
    c.text(c.get(m, "python", "machine"), "machine.python")
    c.str_map(c.get(m, "packages", "machine"), "machine.packages")
    c.number(c.get(m, "load_avg_1m_at_start", "machine"), "machine.load_avg_1m_at_start", minimum=0, nullable=True)
    c.text(c.get(m, "commit", "machine"), "machine.commit", nullable=True)
    c.boolean(c.get(m, "dirty", "machine"), "machine.dirty", nullable=True)


def _validate_parameters(c: _Checker, value: Any) -> list[str]:
    """Repeat, weights (integers adding up to 100), options (non-empty) and scenarios; returns the options."""
    p = c.obj(value, "parameters")
    c.integer(c.get(p, "repeat", "parameters"), "parameters.repeat", minimum=1)
    weights = c.obj(c.get(p, "weights", "parameters"), "parameters.weights")
    if not weights:
        c.fail("parameters.weights", weights, "an object of criterion -> percent")
    for k, w in weights.items():
        c.integer(w, f"parameters.weights.{k}", minimum=0)
    if sum(weights.values()) != 100:
        c.problem("parameters.weights", f"add up to {sum(weights.values())}, expected 100")
    options = c.lst(c.get(p, "options", "parameters"), "parameters.options", nonempty=True)
    for j, o in enumerate(options):
        c.text(o, f"parameters.options[{j}]", nonempty=True)
    if len(set(options)) != len(options):
        c.problem("parameters.options", "lists an option twice")
    for j, s in enumerate(c.lst(c.get(p, "scenarios", "parameters"), "parameters.scenarios")):
        c.text(s, f"parameters.scenarios[{j}]", nonempty=True)
    c.boolean(c.get(p, "interrupted", "parameters"), "parameters.interrupted")
    return options


def _validate_complexity(c: _Checker, value: Any, options: list[str]) -> None:
    """Lines of code and dependencies per option: the complexity criterion and the Code/Artifacts section read them."""
    cx = c.obj(value, "complexity")
    for opt in options:
        if opt not in cx:
            c.problem(f"complexity.{opt}", "is missing (every option in parameters.options has its measured code size)")
    for opt, entry in cx.items():
        at = f"complexity.{opt}"
        e = c.obj(entry, at)
        c.exact_keys(e, _COMPLEXITY_KEYS, at)
        for f, loc in c.obj(e["files"], f"{at}.files").items():
            c.integer(loc, f"{at}.files.{f}", minimum=0)
        c.integer(e["loc"], f"{at}.loc", minimum=0)
        deps = c.lst(e["dependencies"], f"{at}.dependencies")
        for j, d in enumerate(deps):
            c.text(d, f"{at}.dependencies[{j}]", nonempty=True)
        c.integer(e["dependency_count"], f"{at}.dependency_count", minimum=0)
        if e["dependency_count"] != len(deps):
            c.problem(f"{at}.dependency_count", f"is {e['dependency_count']}, but {at}.dependencies lists {len(deps)}")


def _validate_scenario(c: _Checker, value: Any, at: str) -> None:
    s = c.obj(value, at)
    c.exact_keys(s, _SCENARIO_KEYS, at)
    c.text(s["scenario"], f"{at}.scenario", nonempty=True)
    c.text(s["option"], f"{at}.option", nonempty=True)
    if s["status"] not in STATUSES:
        c.problem(f"{at}.status", f"{s['status']!r} is not one of {', '.join(STATUSES)}")
    c.text(s["reason"], f"{at}.reason", nullable=True)
    c.obj(s["params"], f"{at}.params")
    for j, f in enumerate(c.lst(s["facts"], f"{at}.facts")):
        c.obj(f, f"{at}.facts[{j}]")
    for j, d in enumerate(c.lst(s["durations_s"], f"{at}.durations_s")):
        c.number(d, f"{at}.durations_s[{j}]", minimum=0)
    for j, m in enumerate(c.lst(s["measurements"], f"{at}.measurements")):
        _validate_measurement(c, m, f"{at}.measurements[{j}]")


def _validate_measurement(c: _Checker, value: Any, mat: str) -> None:
    """Name, unit, string tags, direction, and at least one finite sample: what scoring and ``compare`` read."""
    m = c.obj(value, mat)
    if set(m) != set(_MEASUREMENT_KEYS):
        c.problem(mat, f"must have exactly {', '.join(_MEASUREMENT_KEYS)}")
    c.text(m["name"], f"{mat}.name", nonempty=True)
    c.text(m["unit"], f"{mat}.unit")
    if not isinstance(m["tags"], dict) or not all(isinstance(v, str) for v in m["tags"].values()):
        c.problem(f"{mat}.tags", "must be an object of strings")
    if m["better"] not in BETTER:
        c.fail(f"{mat}.better", m["better"], '"lower", "higher" or null')
    repeats = c.lst(m["repeats"], f"{mat}.repeats")
    if not all(isinstance(r, list) for r in repeats):
        c.problem(f"{mat}.repeats", "must be a list of lists of numbers")
    if not any(repeats):
        c.problem(mat, f"({m['name']}) has no samples")
    for r in repeats:
        for v in r:
            if not _is_num(v):
                c.problem(mat, f"({m['name']}) holds a non-finite or non-numeric sample {v!r}")


def check_measurement(record: MeasurementRecord) -> None:
    """Raise ``ResultsError`` when ``record`` would make its run unreadable: ``load``'s own rule for a measurement.

    The runner calls it as a step finishes, so a spike that returns no samples,
    a NaN, or a tag that is not a string gets that step marked failed, instead
    of a stored file that ``load`` refuses forever (or a ``save`` that fails
    after the whole run was measured). The message starts with "measurement".
    """
    _validate_measurement(_Checker(""), asdict(record), "measurement")


def check_facts(facts: Any) -> None:
    """Raise ``ResultsError`` when one repeat's facts could not be stored and loaded back: an object of JSON values, no NaN."""
    c = _Checker("")
    c.obj(facts, "facts")
    try:
        json.dumps(facts, allow_nan=False)
    except (TypeError, ValueError) as exc:  # a set, an object, NaN or infinity
        c.problem("facts", f"hold a value a results file cannot store ({exc})")


# -- files ---------------------------------------------------------------------------------------------------------------------


def save(run: RunResult, runs_dir: Path) -> Path:
    """Write the run atomically (temp file, fsync, rename): a crash leaves no half file."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{run.run_id}.json"
    text = json.dumps(run.to_dict(), indent=1, sort_keys=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{run.run_id}.", suffix=".tmp", dir=runs_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    run.path = path
    return path


def load(path: Path) -> RunResult:
    """Read, upgrade and validate one results file; errors name the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ResultsError(f"{path}: not a results file (nested too deeply)") from None
    try:
        run = RunResult.from_dict(data, where=str(path))
    except TypeError as exc:  # pragma: no cover - _validate checks every field the constructors take
        raise ResultsError(f"{path}: malformed record: {exc}") from None
    run.path = path
    return run


def scan_runs(runs_dir: Path) -> tuple[list[RunResult], list[ResultsError]]:
    """Every run stored in ``runs_dir``, oldest first, and one error per file that could not be loaded.

    A bad file is reported, not fatal: the caller shows the errors and carries
    on with the good runs.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return [], []
    runs: list[RunResult] = []
    errors: list[ResultsError] = []
    for p in sorted(runs_dir.glob("*.json")):
        try:
            runs.append(load(p))
        except ResultsError as exc:
            errors.append(exc)
    # Runs started in the same second (a run id has no finer time): the file written later is the newer run.
    runs.sort(key=lambda r: (r.started_at, _mtime_ns(r.path)))
    return runs, errors


def _mtime_ns(path: Path | None) -> int:
    try:
        return path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        return 0


def runs_by_spike(runs: Iterable[RunResult]) -> dict[int, list[RunResult]]:
    """Runs grouped by spike number, keeping their order (oldest first when ``runs`` is, as ``scan_runs`` gives them)."""
    out: dict[int, list[RunResult]] = {}
    for run in runs:
        out.setdefault(int(run.spike["number"]), []).append(run)
    return out
