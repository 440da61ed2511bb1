"""The spike contract: what a spike plugin declares, and how spikes are found.

A spike is a plain object (an instance of :class:`Spike`) registered under the
entry-point group ``realtime_spikes.spikes``. The harness discovers it, runs
each of its scenarios against each of its options, stores what the scenario
measured, and asks the spike to turn those stored measurements into scores,
tables, charts and findings. The spike never writes documents itself, and the
harness never knows what a spike measures: data moves one way, from scenario
to results file to report.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.decide.model import Criterion, Gate
    from harness.hooks import Observer
    from harness.poc import ServerDeclaration
    from harness.results import RunResult

__all__ = [
    "ENTRY_POINT_GROUP",
    "DEFAULT_WEIGHTS",
    "PRIORITIES",
    "Option",
    "Scenario",
    "ScenarioContext",
    "Measurement",
    "ScenarioOutput",
    "Table",
    "Chart",
    "Finding",
    "ReportContent",
    "Spike",
    "SpikeLoadError",
    "NotRunnable",
    "discover",
    "source_hash",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "realtime_spikes.spikes"

#: The seed's decision matrix (``Decision Matrix Template``), in percent.
DEFAULT_WEIGHTS: dict[str, int] = {
    "Performance": 30,
    "Complexity": 20,
    "Maintenance": 20,
    "Scalability": 15,
    "Cost": 15,
}

#: The seed's priority order: critical, important, nice to have.
PRIORITIES = ("critical", "important", "nice")


@dataclass(frozen=True)
class Option:
    """One system under comparison (native WebSocket, Socket.IO, JSON, ...).

    ``code_paths`` are the files of its proof-of-concept code, relative to the
    spike package: they are linked from the document and counted (lines of
    code) for the complexity criterion. ``dependencies`` are the third-party
    distributions the POC needs at run time, counted the same way.
    ``requires`` names the external programs this option needs in every
    scenario (Redis for a scaled-out option), as ``Scenario.requires`` does
    for a scenario: missing, the step is "not run" with the install command.
    ``server`` says how its POC server starts (a :class:`harness.poc.PocServer`, or a
    function returning one); scenarios start it with :func:`harness.poc.poc_server`.
    ``client`` names the client adapter that talks to it (a transport registered in
    :mod:`harness.load.clients`: ``ws-raw``, ``socketio``...). An option with no
    server (a codec, a library compared in process) leaves both empty.
    """

    key: str
    title: str
    description: str = ""
    code_paths: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    server: ServerDeclaration | None = None
    client: str = ""


@dataclass(frozen=True)
class Scenario:
    """A named, parameterised experiment.

    ``params`` hold the full-profile values (the seed's where it gives them);
    ``quick_params`` override some of them for ``--quick``. ``requires`` names
    external programs (``redis-server``, ``node``...) without which the
    scenario is recorded as not run. ``run`` performs one repeat for one option
    and returns what it measured.
    """

    key: str
    title: str
    method: str
    run: Callable[[ScenarioContext], ScenarioOutput]
    params: Mapping[str, Any] = field(default_factory=dict)
    quick_params: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    options: tuple[str, ...] | None = None  # None: every option of the spike
    #: Cap on repeats, for scenarios whose result cannot vary (sizes, feature probes).
    max_repeats: int | None = None

    def resolved_params(self, quick: bool) -> dict[str, Any]:
        """The parameters of one profile: full values, quick overrides on top."""
        out = dict(self.params)
        if quick:
            out.update(self.quick_params)
        return out

    def applies_to(self, option_key: str) -> bool:
        return self.options is None or option_key in self.options


@dataclass
class ScenarioContext:
    """What a scenario's ``run`` gets: the option, the parameters, a place to work."""

    option: Option
    params: dict[str, Any]
    repeat: int
    quick: bool
    workdir: Path
    log: Callable[[str], None] = print
    advance: Callable[[float], None] = lambda fraction: None
    #: Set by the runner: sends a fault reported with :meth:`fault` to the run's observers (:mod:`harness.hooks`).
    on_fault: Callable[[str, str, dict[str, Any]], None] | None = None

    def fault(self, what: str, target: str, **details: Any) -> None:
        """Report a fault this scenario injected (``ctx.fault("kill", "server", signal="SIGKILL")``) to the run's observers.

        Call it as the fault happens: the event's times are taken then. Outside a run (a context built by hand,
        with no ``on_fault``) the report goes nowhere.
        """
        if self.on_fault is not None:
            self.on_fault(what, target, details)


@dataclass
class Measurement:
    """Raw samples of one metric, with its unit; never only a summary.

    ``better`` is ``"lower"``, ``"higher"`` or ``None`` (informational), and
    tells ``spike compare`` which direction is a regression. ``tags`` say what
    the samples are of (``{"message": "cursor"}``).
    """

    name: str
    unit: str
    samples: list[float]
    tags: dict[str, str] = field(default_factory=dict)
    better: str | None = "lower"


@dataclass
class ScenarioOutput:
    """What one repeat of a scenario measured: samples, and facts that are not numbers."""

    measurements: list[Measurement] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, unit: str, samples: Iterable[float], better: str | None = "lower", **tags: str) -> None:
        self.measurements.append(Measurement(name, unit, [float(s) for s in samples], dict(tags), better))


@dataclass
class Table:
    """A Markdown table in the Results section; every cell comes from stored data."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Chart:
    """A chart drawn by the harness (matplotlib, SVG).

    ``kind`` is ``"bar"`` (grouped bars: ``categories`` on the x axis, one bar
    per series) or ``"line"`` (series of ``(x, y)`` points).
    ``spread`` gives, per series, the ``(low, high)`` across repeats of each bar
    (aligned with ``categories``) or point (aligned with the series' points), in
    the chart's unit, or ``None`` where a value ran once: it is drawn as whiskers
    and the document says so (see :meth:`harness.results.RunResult.spread`).
    """

    slug: str
    title: str
    kind: str
    ylabel: str
    series: dict[str, list[Any]]
    categories: list[str] = field(default_factory=list)
    xlabel: str = ""
    log_y: bool = False
    caption: str = ""
    spread: dict[str, list[tuple[float, float] | None]] = field(default_factory=dict)

    @property
    def has_spread(self) -> bool:
        return any(r is not None for ranges in self.spread.values() for r in ranges)


@dataclass
class Finding:
    """A "Good, because ..." or "Bad, because ..." point, citing a measured value."""

    option: str
    good: bool
    text: str


@dataclass
class ReportContent:
    """What a spike contributes to its document, all derived from a stored run."""

    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: What limits the answer, for the decision box (a client-bound run, software rendering...), each from the stored run.
    caveats: list[str] = field(default_factory=list)


class Spike:
    """Base class of spike plugins: subclass it and fill in the class attributes.

    A subclass declares its ``criteria`` and ``gates`` as data
    (:mod:`harness.decide`): the harness scores them, never the spike. It
    implements :meth:`report`, which reads only the stored
    :class:`~harness.results.RunResult`, so ``spike report`` can re-render a
    document without running anything. The Complexity criterion is the
    harness's own; ``ships_anyway`` names the dependencies it does not count
    (the app ships them whichever option wins).
    """

    number: int
    slug: str
    title: str
    priority: str
    planned_hours: float
    question: str
    options: Sequence[Option] = ()
    scenarios: Sequence[Scenario] = ()
    weights: Mapping[str, int] = DEFAULT_WEIGHTS
    #: What the options are judged on, and what they must pass (``harness.decide``).
    criteria: Sequence[Criterion] = ()
    gates: Sequence[Gate] = ()
    ships_anyway: tuple[str, ...] = ()
    #: The smallest lead, relative to the best weighted total, that is not a tie.
    tie_margin: float = 0.05
    #: Repeats per scenario and option unless ``--repeat`` says otherwise.
    default_repeat: int = 5
    quick_repeat: int = 3
    #: The package directory, for code links, complexity and the source hash.
    package_dir: Path

    def report(self, run: RunResult) -> ReportContent:  # pragma: no cover - abstract
        raise NotImplementedError

    def observers(self) -> Sequence[Observer]:
        """Observers of this spike's runs (:mod:`harness.hooks`), asked for afresh at the start of each run; none by default."""
        return ()

    # -- helpers for the harness -------------------------------------------------
    @property
    def key(self) -> str:
        return f"s{self.number:02d}-{self.slug}"

    def option(self, key: str) -> Option:
        for opt in self.options:
            if opt.key == key:
                return opt
        raise KeyError(key)

    def scenario(self, key: str) -> Scenario:
        for sc in self.scenarios:
            if sc.key == key:
                return sc
        raise KeyError(key)

    def validate(self) -> None:
        """Check the declaration is complete; raise ``SpikeLoadError`` if not."""
        missing = [a for a in ("number", "slug", "title", "priority", "planned_hours", "question", "package_dir") if not hasattr(self, a)]
        if missing:
            raise SpikeLoadError(f"{type(self).__name__} does not declare {', '.join(missing)}")
        if self.priority not in PRIORITIES:
            raise SpikeLoadError(f"spike {self.number}: priority {self.priority!r} is not one of {', '.join(PRIORITIES)}")
        if not self.options or not self.scenarios:
            raise SpikeLoadError(f"spike {self.number}: declares no options or no scenarios")
        if sum(self.weights.values()) != 100:
            raise SpikeLoadError(f"spike {self.number}: criterion weights add up to {sum(self.weights.values())}, not 100")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise SpikeLoadError(f"spike {self.number}: a criterion is declared twice")
        undeclared = [c for c in self.weights if c not in names and c != "Complexity"]
        if undeclared:
            raise SpikeLoadError(f"spike {self.number}: weighted criteria with no declaration: {', '.join(undeclared)}")
        unweighted = [c for c in names if c not in self.weights]
        if unweighted:
            raise SpikeLoadError(f"spike {self.number}: declared criteria with no weight: {', '.join(unweighted)}")
        self._validate_options()

    def _validate_options(self) -> None:
        # The client adapter's name is checked against the registry by the CLI (harness.load stays out of the core).
        from harness.poc import PocServer

        for opt in self.options:
            if opt.server is not None and not (isinstance(opt.server, PocServer) or callable(opt.server)):
                raise SpikeLoadError(f"spike {self.number}: option {opt.key!r}: server must be a PocServer or a function returning one")


class NotRunnable(Exception):
    """Raised by a scenario that cannot run here (a program missing, a build impossible).

    The runner records the step as *not run* with this message as the reason,
    rather than as failed: the message should say what is missing and how to
    install it.
    """


class SpikeLoadError(Exception):
    """A plugin could not be loaded or declares an incomplete spike."""


def discover(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> dict[int, Spike]:
    """Load every spike registered under ``realtime_spikes.spikes``, by number.

    An entry point may name a :class:`Spike` instance or subclass. Two spikes
    with the same number are an error: silently choosing one would make
    results depend on install order.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    spikes: dict[int, Spike] = {}
    for ep in entry_points:
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the others
            raise SpikeLoadError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        spike = obj() if isinstance(obj, type) else obj
        if not isinstance(spike, Spike):
            raise SpikeLoadError(f"entry point {ep.name!r} ({ep.value}) is not a Spike")
        spike.validate()
        if spike.number in spikes:
            raise SpikeLoadError(f"two plugins declare spike {spike.number}: {spikes[spike.number].slug!r} and {spike.slug!r}")
        spikes[spike.number] = spike
    return dict(sorted(spikes.items()))


#: The harness package: its modules run inside every spike's measurements.
HARNESS_DIR = Path(__file__).resolve().parent
#: Folders never hashed, anywhere: caches, installed dependencies (their lock files are hashed instead) and build outputs.
#: Folders and files whose name starts with a dot (``.svelte-kit``, ``.gitignore``) are skipped too.
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "build", "dist"})
_SKIPPED_DIR_SUFFIXES = (".egg-info",)
#: Parts of the harness that cannot change a measurement, relative to ``harness/``: the renderer, the decision
#: layer and the command line (``spike report`` re-applies them to stored runs), ``compare`` (reads stored runs only),
#: and the budget table (it judges a run's wall time, it does not change what is measured).
_HARNESS_NOT_HASHED = frozenset({"report", "decide", "cli.py", "compare.py", "budget.py", "budgets.toml"})


#: The harness modules that run every spike (the runner and what it stands on): always in a spike's source hash.
CORE_PARTS = frozenset(
    {
        "__init__.py",
        "runner.py",
        "plugin.py",
        "results.py",
        "process.py",
        "poc.py",
        "probes.py",
        "machine.py",
        "stats.py",
        "complexity.py",
        "hooks.py",
    }
)


def optional_parts(harness_dir: Path) -> list[str]:
    """Every other part of the harness (a module or a subpackage: the load engine, the services, the browsers, the faults,
    and any added later): it counts in a spike's source hash only when the spike uses it, by import (directly, through
    another part it uses, or through the core) or by name (``python -m harness.load``). A part added or changed for
    other spikes (a browser driver for Spike 3) then does not make this spike's runs stale."""
    try:
        names = [p.name for p in harness_dir.iterdir()]
    except OSError:
        return []
    return sorted(n for n in names if not _skipped(n) and n not in CORE_PARTS and n not in _HARNESS_NOT_HASHED)


def _part_used(part: str, texts: Iterable[str]) -> bool:
    name = part.removesuffix(".py")
    # ``harness.x``, ``harness/x``, ``from harness import x`` and ``from harness import (\n    a,\n    x,\n)``.
    pattern = re.compile(rf"\bharness[./]{name}\b|\bfrom\s+harness\s+import\s+(?:\([^)]*\b{name}\b[^)]*\)|[^\n(]*\b{name}\b)")
    return any(pattern.search(t) for t in texts)


def _texts(files: Iterable[Path]) -> list[str]:
    out = []
    for f in files:
        if f.suffix == ".py":
            try:
                out.append(f.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return out


def _imports(text: str) -> str:
    """The import statements of a module's source, one per line (empty if it does not parse)."""
    import ast

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            lines.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
    return "\n".join(lines)


def used_parts(spike_files: Iterable[Path], harness_dir: Path) -> list[str]:
    """The optional harness parts a spike uses, followed through the core harness and the parts themselves."""
    optional = optional_parts(harness_dir)
    core = _hashed_files(harness_dir, _HARNESS_NOT_HASHED | set(optional))
    # The spike's own files are read as text (a module named in a subprocess command counts); the core's only by
    # its import statements (its docstrings name the parts freely).
    texts = _texts(spike_files) + [_imports(t) for t in _texts(core)]
    used: list[str] = []
    while True:
        new = [p for p in optional if p not in used and _part_used(p, texts)]
        if not new:
            return sorted(used)
        used += new
        for p in new:
            path = harness_dir / p
            texts += _texts(_hashed_files(path) if path.is_dir() else [path])


#: Files of a spike's package that cannot change a measurement: its decision (criteria, utilities, gates), which only
#: scores stored runs, as ``harness/decide`` does.
_SPIKE_NOT_HASHED = frozenset({"decision.py"})


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in _SKIPPED_DIRS or name.endswith(_SKIPPED_DIR_SUFFIXES)


def _hashed_files(root: Path, skip_top: Iterable[str] = ()) -> list[Path]:
    """Every file under ``root`` (any extension), minus caches, build outputs, dotfiles and the top-level names in ``skip_top``."""
    skip = frozenset(skip_top)
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        top = Path(folder) == Path(root)
        # Prune in place so installed dependencies are never walked.
        dirs[:] = [d for d in dirs if not _skipped(d) and not (top and d in skip)]
        files.extend(Path(folder) / n for n in names if not n.startswith(".") and not (top and n in skip))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def source_hash(spike: Spike, harness_dir: Path | None = None) -> str:
    """A hash of the code and data a run of ``spike`` executes, so results of edited code show as stale.

    The rule: every file of the spike's own package, whatever its extension (code, ``.proto``,
    lock files, replayed traces such as ``automerge-paper.json.gz``), except its ``decision.py``
    (criteria and gates: they score stored runs, they measure nothing), plus every file of the
    ``harness`` package that runs or measures, which is all of it except ``harness/report/``,
    ``harness/decide/``, ``cli.py``, ``compare.py``, ``budget.py`` and ``budgets.toml``, and except the
    parts outside :data:`CORE_PARTS` (the load engine, the services, the browsers, the faults, any new module) that
    neither the spike nor the harness core uses (see :func:`optional_parts` and :func:`used_parts`: imports and
    ``harness.x`` names, followed through the parts). A spike's measurements run
    through harness modules (runner, process, probes, load engine, services), so a change there
    marks its stored runs stale too; hashing the package rather than tracing imports is the simple
    rule that cannot miss a module. ``results.py`` stays in: it defines what a run stores.
    The parts left out cannot change a measurement: the renderer, the decision layer and the CLI are re-applied to
    stored runs by ``spike report``, ``compare`` only reads stored runs, and the budget table
    judges a run's duration. Skipped everywhere: ``__pycache__``, ``node_modules`` (the lock
    files that pin it are hashed), build outputs (``build``, ``dist``, ``*.egg-info``) and names
    starting with a dot (``.svelte-kit``, ``.gitignore``).
    """
    h = hashlib.sha256()
    hdir = Path(harness_dir or HARNESS_DIR)
    spike_files = _hashed_files(Path(spike.package_dir), _SPIKE_NOT_HASHED)
    unused = set(optional_parts(hdir)) - set(used_parts(spike_files, hdir))
    roots: tuple[tuple[str, Path, Iterable[str]], ...] = (
        ("spike", Path(spike.package_dir), _SPIKE_NOT_HASHED),
        ("harness", hdir, _HARNESS_NOT_HASHED | unused),
    )
    for label, root, skip in roots:
        for path in _hashed_files(root, skip):
            h.update(f"{label}/{path.relative_to(root).as_posix()}".encode())
            h.update(b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]
