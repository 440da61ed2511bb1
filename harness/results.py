"""Stored runs: the result schema, its format history, atomic writes, validated loads.

One JSON file per run under ``results/runs/``. Documents are rendered from these
files only, so every figure in a document can be traced back to raw samples.

Format history (bump ``FORMAT_VERSION`` and add a line when the schema changes;
``load`` refuses versions it does not know rather than guessing):

* 1 (2026-11-25): first format. A run holds the spike (number, slug, title,
  source hash), profile (``full``/``quick``), author, start/finish times and
  measured duration, machine metadata, parameters (repeat, weights, options,
  scenarios), measured code complexity per option, and per scenario x option
  the status (``ok``, ``failed``, ``not_run``, ``interrupted``), the reason,
  the parameters, raw samples per repeat for every measurement, measured facts
  per repeat, and the seconds each repeat took.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "STATUSES",
    "ResultsError",
    "MeasurementRecord",
    "ScenarioResult",
    "RunResult",
    "save",
    "load",
    "iter_runs",
    "latest_runs",
]

FORMAT_VERSION = 1
STATUSES = ("ok", "failed", "not_run", "interrupted")


class ResultsError(Exception):
    """A results file is missing, malformed, or of a format version we do not know."""


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
        return [statistics.median(r) for r in self.repeats if r]


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
        raise KeyError(f"{self.scenario}/{self.option}: no measurement {name} {tags}")

    def median(self, name: str, **tags: str) -> float | None:
        """The median of a metric's raw samples, or ``None`` when this step has no such metric."""
        try:
            return self.measurement(name, **tags).median
        except KeyError:
            return None

    def find(self, name: str) -> list[MeasurementRecord]:
        return [m for m in self.measurements if m.name == name]

    @property
    def fact(self) -> dict[str, Any]:
        """The facts of the last repeat (facts are expected to repeat exactly)."""
        return self.facts[-1] if self.facts else {}


@dataclass
class RunResult:
    """One run of one spike: everything a document needs, and nothing computed by hand."""

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
    format_version: int = FORMAT_VERSION
    path: Path | None = field(default=None, compare=False)

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

    @property
    def options(self) -> list[str]:
        return list(self.parameters.get("options", []))

    @property
    def weights(self) -> dict[str, int]:
        return dict(self.parameters.get("weights", {}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return {"format_version": d.pop("format_version"), **d}

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> RunResult:
        _validate(data, where)
        scen = [
            ScenarioResult(
                scenario=s["scenario"],
                option=s["option"],
                status=s["status"],
                reason=s.get("reason", ""),
                params=s.get("params", {}),
                measurements=[MeasurementRecord(**m) for m in s.get("measurements", [])],
                facts=s.get("facts", []),
                durations_s=s.get("durations_s", []),
            )
            for s in data["scenarios"]
        ]
        fields = {k: v for k, v in data.items() if k not in ("scenarios",)}
        return cls(scenarios=scen, **fields)


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "run_id": str,
    "spike": dict,
    "profile": str,
    "author": str,
    "started_at": str,
    "finished_at": str,
    "duration_s": (int, float),
    "machine": dict,
    "parameters": dict,
    "complexity": dict,
    "scenarios": list,
    "harness": dict,
}


def _validate(data: Any, where: str) -> None:
    """Check the structure; raise ``ResultsError`` naming the first problem found."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: top level is {type(data).__name__}, expected an object")
    version = data.get("format_version")
    if version is None:
        raise ResultsError(f"{where}: no format_version; not a realtime-spikes results file")
    if version != FORMAT_VERSION:
        raise ResultsError(f"{where}: format_version {version!r} is not supported (this tool reads {FORMAT_VERSION})")
    unknown = set(data) - set(_REQUIRED)
    if unknown:
        raise ResultsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise ResultsError(f"{where}: missing field {key!r}")
        if not isinstance(data[key], typ) or isinstance(data[key], bool):
            raise ResultsError(f"{where}: field {key!r} is {type(data[key]).__name__}, expected {_tname(typ)}")
    for k in ("number", "slug", "source_hash"):
        if k not in data["spike"]:
            raise ResultsError(f"{where}: spike.{k} is missing")
    if not isinstance(data["spike"]["number"], int) or isinstance(data["spike"]["number"], bool):
        raise ResultsError(f"{where}: spike.number is {data['spike']['number']!r}, expected an integer")
    if not isinstance(data["parameters"].get("options", []), list):
        raise ResultsError(f"{where}: parameters.options must be a list")
    if data["profile"] not in ("full", "quick"):
        raise ResultsError(f"{where}: profile {data['profile']!r} is neither 'full' nor 'quick'")
    for i, s in enumerate(data["scenarios"]):
        at = f"{where}: scenarios[{i}]"
        if not isinstance(s, dict):
            raise ResultsError(f"{at} is not an object")
        for k in ("scenario", "option", "status"):
            if not isinstance(s.get(k), str):
                raise ResultsError(f"{at}.{k} is missing or not a string")
        if s["status"] not in STATUSES:
            raise ResultsError(f"{at}.status {s['status']!r} is not one of {', '.join(STATUSES)}")
        for j, m in enumerate(s.get("measurements", [])):
            mat = f"{at}.measurements[{j}]"
            if not isinstance(m, dict) or set(m) != {"name", "unit", "tags", "better", "repeats"}:
                raise ResultsError(f"{mat} must have exactly name, unit, tags, better, repeats")
            if not isinstance(m["repeats"], list) or not all(isinstance(r, list) for r in m["repeats"]):
                raise ResultsError(f"{mat}.repeats must be a list of lists of numbers")
            if not any(m["repeats"]):
                raise ResultsError(f"{mat} ({m['name']}) has no samples")
            if not isinstance(m["tags"], dict) or not all(isinstance(v, str) for v in m["tags"].values()):
                raise ResultsError(f"{mat}.tags must be an object of strings")
            for r in m["repeats"]:
                for v in r:
                    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                        raise ResultsError(f"{mat} ({m['name']}) holds a non-finite or non-numeric sample {v!r}")


def _tname(t: type | tuple[type, ...]) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


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
    """Read and validate one results file; errors name the file and the problem."""
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
    try:
        run = RunResult.from_dict(data, where=str(path))
    except TypeError as exc:
        raise ResultsError(f"{path}: malformed record: {exc}") from None
    run.path = path
    return run


def iter_runs(runs_dir: Path) -> Iterator[RunResult]:
    """Every run stored in ``runs_dir``, oldest first; a malformed file raises."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return
    runs = [load(p) for p in sorted(runs_dir.glob("*.json"))]
    yield from sorted(runs, key=lambda r: r.started_at)


def latest_runs(runs_dir: Path) -> dict[int, RunResult]:
    """The newest stored run of each spike, by spike number."""
    out: dict[int, RunResult] = {}
    for run in iter_runs(runs_dir):
        out[int(run.spike["number"])] = run
    return out
