"""From a stored run and a spike's declared criteria and gates to a decision a reviewer can check.

The steps, in order (the README's "How a recommendation is made"):

1. **Values.** Each criterion part reads its stored value for each option, one
   value per repeat (the repeat is the unit of evidence, as in ``spike compare``).
   The value shown is the median of the per-repeat values.
2. **Gates.** Each gate is judged on the option's worst repeat. An option that
   fails a gate cannot be recommended; the matrix says which gate and the value.
3. **Not measured.** A criterion that could not be measured for some option is
   left out for every option, and the remaining weights are renormalised to
   100; the document says which and why. So is a part that declares
   ``max_spread`` when some option's repeats of it spread by more than that: a
   value that does not repeat ranks nobody (the criterion's other parts are
   renormalised; a criterion of that one part is left out).
4. **Scores.** Each part's value goes through its utility (good enough = 10,
   unacceptable = 0); a criterion's score is the weighted mean of its parts;
   the total is the weighted sum over criteria.
5. **Ties.** On a criterion, two options tie when every part's medians differ
   by less than the part's smallest difference that matters, or the
   per-repeat values cannot tell them apart (:func:`harness.stats.tied`). The
   recommendation is a tie when the per-repeat totals of the best qualifying
   option and a runner-up are tied (the spike's ``tie_margin`` is the
   smallest relative difference that matters), or when a runner-up wins any
   repeat on its own.
6. **Sensitivity.** Under the spike's weights and the seed's: the winner, and
   the fewest weight points that, moved between criteria, make another option
   win.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.decide.model import COMPLEXITY, Criterion, Derived, Gate, Largest, Metric, NotMeasured, Part, _tag_number, complexity_part
from harness.stats import Separation, separate, tied

if TYPE_CHECKING:
    from harness.plugin import Spike
    from harness.results import RunResult

__all__ = [
    "repeat_view",
    "source_values",
    "PartValue",
    "Cell",
    "GateResult",
    "Move",
    "Sensitivity",
    "Decision",
    "criteria_of",
    "evaluate",
    "sensitivity",
    "DEFAULT_TIE_MARGIN",
]

#: The smallest difference between two weighted totals that matters, relative to the best total, unless a spike
#: declares its own ``tie_margin``: 0.4 of 8 points, about what one criterion weighted 20% moves when its score
#: shifts by two points.
DEFAULT_TIE_MARGIN = 0.05


def repeat_view(run: RunResult, k: int) -> RunResult:
    """The run as if only repeat ``k`` had been made (steps with fewer repeats keep their last one)."""
    scenarios = []
    for sr in run.scenarios:
        ms = [dataclasses.replace(m, repeats=[m.repeats[min(k, len(m.repeats) - 1)]]) for m in sr.measurements if m.repeats]
        facts = [sr.facts[min(k, len(sr.facts) - 1)]] if sr.facts else []
        durations = [sr.durations_s[min(k, len(sr.durations_s) - 1)]] if sr.durations_s else []
        scenarios.append(dataclasses.replace(sr, measurements=ms, facts=facts, durations_s=durations))
    return dataclasses.replace(run, scenarios=scenarios)


def _option_repeats(run: RunResult, option: str) -> int:
    """The repeats of the option's own steps; for an option measured only inside another option's steps (a scenario
    declared for one carrier option that measures every option, tagged), the repeats of the run's steps."""
    own = max((len(m.repeats) for sr in run.scenarios if sr.option == option for m in sr.measurements), default=0)
    return own or max((len(m.repeats) for sr in run.scenarios for m in sr.measurements), default=0)


def source_values(source: Metric | Derived, run: RunResult, option: str) -> list[float]:
    """One value per repeat of ``source`` for ``option``; raises :class:`NotMeasured` with the reason."""
    if isinstance(source, Metric):
        return source.repeats(run, option)
    if source.exact:
        v = source.fn(run, option)
        if v is None:
            raise NotMeasured("no value")
        return [float(v)]
    values: list[float] = []
    reason = "no value"
    for k in range(max(1, _option_repeats(run, option))):
        try:
            v = source.fn(repeat_view(run, k), option)
        except NotMeasured as exc:
            reason = str(exc)
            continue
        if v is not None:
            values.append(float(v))
    if not values:
        raise NotMeasured(reason)
    return values


@dataclass
class PartValue:
    """One part of a criterion for one option: its value per repeat, the value shown, its score."""

    part: Part
    repeats: list[float]
    value: float
    score: float

    def at(self, k: int) -> float:
        return self.repeats[min(k, len(self.repeats) - 1)]


@dataclass
class Cell:
    """One criterion for one option: the 0..10 score (``None``: not measured), its basis in words."""

    criterion: str
    score: float | None
    parts: list[PartValue]
    missing: str = ""
    tied_best: bool = False  # tied with the best option on this criterion (the best itself included)

    @property
    def basis(self) -> str:
        if self.score is None:
            return f"not measured: {self.missing}"
        return "; ".join(f"{p.part.label} {p.part.show(p.value)}" for p in self.parts)

    def score_at(self, k: int) -> float:
        total_w = sum(p.part.weight for p in self.parts)
        return sum(p.part.weight * p.part.utility.score(p.at(k)) for p in self.parts) / total_w


@dataclass
class GateResult:
    """One gate for one option."""

    gate: Gate
    status: str  # "pass", "fail" or "not measured"
    value: float | None = None
    reason: str = ""  # why not measured
    loads: list[tuple[str, float, bool]] = field(default_factory=list)  # (load, worst value, passes), smallest load first

    @property
    def highest_pass(self) -> str | None:
        ok = [load for load, _, passed in self.loads if passed]
        return ok[-1] if ok else None

    @property
    def text(self) -> str:
        if self.status == "not measured":
            return f"{self.gate.name}: not measured ({self.reason})"
        shown = self.gate.show(self.value)  # type: ignore[arg-type]
        if self.status == "pass":
            return f"passes {self.gate.name} ({shown})"
        load = ""
        if len(self.loads) > 1:
            tag = self.load_tag
            hp = self.highest_pass
            measured = ", ".join(load for load, _, _ in self.loads)
            load = f" (passes up to {tag} = {hp})" if hp is not None else f" (fails at every {tag} measured: {measured})"
        return f"fails: {self.gate.name}, {shown}{load}"

    @property
    def load_tag(self) -> str:
        src = self.gate.source
        return next((k for k, v in src.tags.items() if isinstance(v, Largest)), "") if isinstance(src, Metric) else ""


@dataclass(frozen=True)
class Move:
    """Weight points moved from one criterion to another."""

    points: float
    source: str
    target: str


@dataclass
class Sensitivity:
    """The winner under one set of weights, and the smallest change of weights that makes another option win."""

    label: str  # "this spike's weights", "the seed's weights"
    weights: dict[str, float]  # as used: renormalised over the measured criteria
    winner: str | None
    totals: dict[str, float]
    flip_to: str | None = None
    moves: list[Move] = field(default_factory=list)

    @property
    def points(self) -> float | None:
        return sum(m.points for m in self.moves) if self.flip_to else None


@dataclass
class Decision:
    """Everything the document, the index and the console say about one run's recommendation."""

    spike_number: int
    options: list[str]
    titles: dict[str, str]
    criteria: list[str]  # declared, in weight order
    weights: dict[str, int]  # declared
    used: dict[str, float]  # renormalised weights of the measured criteria (sum 100)
    left_out: dict[str, str]  # criterion -> why it is not measured for every option
    cells: dict[str, dict[str, Cell]]
    formulas: dict[str, str]
    gates: dict[str, list[GateResult]]
    totals: dict[str, float | None]
    repeat_totals: dict[str, list[float]]
    repeat_winners: list[str | None]
    eligible: list[str]
    tied_with: list[str]
    evidence: dict[str, str]
    noise_estimate: bool
    more_repeats_could_separate: bool
    tie_margin: float
    sensitivities: list[Sensitivity]

    # -- the matrix ---------------------------------------------------------------------------------
    def score(self, option: str, criterion: str) -> float | None:
        c = self.cells[option].get(criterion)
        return None if c is None or c.score is None else round(c.score, 1)

    def failed_gates(self, option: str) -> list[GateResult]:
        return [g for g in self.gates.get(option, []) if g.status == "fail"]

    def unverified_gates(self, option: str) -> list[GateResult]:
        return [g for g in self.gates.get(option, []) if g.status == "not measured"]

    def gate_cell(self, option: str) -> str:
        fails = self.failed_gates(option)
        if fails:
            return "; ".join(g.text for g in fails)
        unverified = self.unverified_gates(option)
        if unverified:
            return "passes the measured gates; " + "; ".join(g.text for g in unverified)
        return "passes" if self.gates.get(option) else "no gates"

    def gate_cell_brief(self, option: str) -> str:
        """The matrix's gate cell: the gates' names only (their values and reasons are in the decision box and the caveats),
        so a row of many options stays readable."""
        fails = self.failed_gates(option)
        if fails:
            return "fails: " + "; ".join(g.gate.name for g in fails)
        unverified = self.unverified_gates(option)
        if unverified:
            return "passes; not measured: " + "; ".join(g.gate.name for g in unverified)
        return "passes" if self.gates.get(option) else "no gates"

    @property
    def has_gates(self) -> bool:
        return any(self.gates.values())

    @property
    def ranking(self) -> list[str]:
        """Options that pass every gate and have a total, best weighted total first."""
        return sorted((o for o in self.eligible if self.totals[o] is not None), key=lambda o: -(self.totals[o] or 0.0))

    @property
    def best(self) -> str | None:
        r = self.ranking
        return r[0] if r else None

    @property
    def runner_up(self) -> str | None:
        r = self.ranking
        return r[1] if len(r) > 1 else None

    @property
    def blocked(self) -> list[str]:
        """Options a gate keeps out, best total first."""
        return sorted((o for o in self.options if self.failed_gates(o)), key=lambda o: -(self.totals[o] or 0.0))

    @property
    def none_qualifies(self) -> bool:
        return bool(self.options) and not self.eligible

    @property
    def tie(self) -> bool:
        return bool(self.tied_with)

    @property
    def tied(self) -> list[str]:
        return [self.best, *self.tied_with] if self.best else []

    @property
    def margin(self) -> float | None:
        if self.best is None or self.runner_up is None:
            return None
        return (self.totals[self.best] or 0.0) - (self.totals[self.runner_up] or 0.0)

    def title(self, option: str) -> str:
        return self.titles.get(option, option)

    # -- words ----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """One line for the index row and the console: the winner, a tie, or none qualifies."""
        if self.none_qualifies:
            failed = sorted({g.gate.name for o in self.options for g in self.failed_gates(o)})
            return f"none qualifies at this load: every option fails a gate ({'; '.join(failed)})"
        if self.best is None:
            return "none: no option could be scored"
        if self.tie:
            names = " / ".join(self.title(o) for o in self.tied)
            return f"tie: {names} ({' / '.join(f'{self.totals[o]:.2f}' for o in self.tied)} of 10, within noise)"
        note = "" if self.noise_estimate or self.runner_up is None else "; one repeat: no noise estimate"
        return f"{self.title(self.best)} ({self.totals[self.best]:.2f} / 10{note})"

    def tie_names(self, bold: bool = False) -> str:
        return _and([f"**{self.title(o)}**" if bold else self.title(o) for o in self.tied])

    def tie_totals(self) -> str:
        return _and([f"{self.totals[o]:.2f}" for o in self.tied])

    def tie_evidence(self) -> str:
        if len(self.tied_with) == 1:
            return self.evidence[self.tied_with[0]]
        return "; ".join(f"{self.title(o)}: {self.evidence[o]}" for o in self.tied_with)

    def ranking_text(self) -> str:
        return ", ".join(f"{i}. {self.title(o)} {self.totals[o]:.2f}" for i, o in enumerate(self.ranking, 1))

    def repeat_totals_text(self) -> str:
        return "; ".join(f"{self.title(o)} {', '.join(f'{v:.2f}' for v in self.repeat_totals.get(o, []))}" for o in self.ranking)

    def left_out_text(self) -> str:
        return "; ".join(f"{c} ({why})" for c, why in self.left_out.items())

    def criterion_ties(self, criterion: str) -> list[str]:
        """The options tied for the best score on ``criterion`` (one option: no tie)."""
        return [o for o in self.options if self.cells[o].get(criterion) and self.cells[o][criterion].tied_best]


def _and(items: Sequence[str]) -> str:
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def criteria_of(spike: Spike) -> list[Criterion]:
    """The spike's declared criteria, with the harness's Complexity criterion added unless the spike declares it."""
    declared = list(spike.criteria)
    if not any(c.name == COMPLEXITY for c in declared):
        declared.append(
            Criterion(
                COMPLEXITY,
                (complexity_part(spike.ships_anyway),),
                "what the option adds to the code base: lines to read and maintain, dependencies to upgrade and audit",
            )
        )
    return declared


def _formula(criterion: Criterion) -> str:
    parts = []
    total_w = sum(p.weight for p in criterion.parts)
    for p in criterion.parts:
        share = f"{p.weight / total_w:.0%} " if len(criterion.parts) > 1 else ""
        spread = (
            f", and an option whose repeats spread by more than {p.max_spread:.0%} of its median ties with every other"
            if p.max_spread is not None
            else ""
        )
        parts.append(
            f"{share}{p.label}, {p.source.describe()}: {p.utility.text(p.show)}; under {p.show(p.min_diff)} apart is a tie{spread}"
        )
    about = f"{criterion.about[:1].upper()}{criterion.about[1:]}. " if criterion.about else ""
    if len(parts) == 1:
        return f"{about}Score = {parts[0]}."
    return f"{about}Score = the weighted mean of: " + "; ".join(parts) + "."


def _part_tied(a: PartValue, b: PartValue, alpha: float = 0.05) -> tuple[bool, str]:
    """Whether two options' values of one part tie, and why in words.

    A tie when the medians differ by less than the part's smallest difference
    that matters, or when the per-repeat values overlap (the range of one
    option's repeats meets the other's) and there are too few repeats for a
    Mann-Whitney test over them to say otherwise. Single values that differ by
    at least the smallest difference are not a tie: that difference is the
    declared noise floor. A part declaring ``max_spread`` also ties when either
    option's repeats spread by more than that fraction of their median.
    """
    p = a.part
    gap = abs(a.value - b.value)
    if gap < p.min_diff:
        return True, f"{p.label} {p.show(a.value)} vs {p.show(b.value)}, under {p.show(p.min_diff)} apart"
    for side in (a, b):
        if p.too_spread(side.repeats):
            return (
                True,
                f"{p.label}: repeats {p.show(min(side.repeats))}-{p.show(max(side.repeats))} spread over {p.max_spread:.0%}, not ranked",
            )
    if p.source.exact or max(a.repeats) < min(b.repeats) or max(b.repeats) < min(a.repeats):
        return False, ""
    sep: Separation = separate([[v] for v in a.repeats], [[v] for v in b.repeats], min_effect=0.0, alpha=alpha)
    if sep.evidence == "significant":
        return False, ""
    return True, f"{p.label}: their repeats overlap ({sep.why})"


def _gate(gate: Gate, run: RunResult, option: str) -> GateResult:
    try:
        values = source_values(gate.source, run, option)
    except NotMeasured as exc:
        return GateResult(gate, "not measured", reason=str(exc))
    worst = gate.worst(values)
    result = GateResult(gate, "pass" if gate.passes(worst) else "fail", worst)
    src = gate.source
    load_tag = result.load_tag
    if load_tag and isinstance(src, Metric):
        sr = run.ok(src.scenario, option)
        fixed = src.resolve_tags(run, option)
        loads = sorted({m.tags[load_tag] for m in (sr.find(src.name) if sr else []) if load_tag in m.tags}, key=_tag_number)
        for load in loads:
            at = dataclasses.replace(src, tags={**fixed, load_tag: load})
            try:
                w = gate.worst(at.repeats(run, option))
            except NotMeasured:
                continue
            result.loads.append((load, w, gate.passes(w)))
    return result


def _totals(cells: Mapping[str, Cell], used: Mapping[str, float]) -> float:
    return sum(w * (cells[c].score or 0.0) for c, w in used.items()) / 100


def _renormalise(weights: Mapping[str, float], measured: Sequence[str]) -> dict[str, float]:
    kept = {c: float(w) for c, w in weights.items() if c in measured and w > 0}
    s = sum(kept.values())
    return {c: 100 * w / s for c, w in kept.items()} if s else {}


def sensitivity(label: str, weights: Mapping[str, float], scores: Mapping[str, Mapping[str, float]]) -> Sensitivity:
    """The winner among ``scores`` (option -> criterion -> 0..10) under ``weights`` (sum 100), and the fewest points to flip it.

    Moving weight from criterion i to criterion j changes the winner's lead
    over a rival by (d_i - d_j) per point, d being the winner's score minus the
    rival's. The cheapest flip pours into the criterion where the rival leads
    most, taken from the criteria where the winner leads most, each down to
    zero: a greedy that is exact for this linear problem. The smallest over
    the rivals is reported; a rival worse on every criterion cannot win under
    any weights.
    """
    totals = {o: sum(w * s.get(c, 0.0) for c, w in weights.items()) / 100 for o, s in scores.items()}
    if not totals:
        return Sensitivity(label, dict(weights), None, {})
    winner = max(totals, key=lambda o: totals[o])
    out = Sensitivity(label, dict(weights), winner, totals)
    best_points: float | None = None
    for rival in scores:
        if rival == winner:
            continue
        d = {c: scores[winner].get(c, 0.0) - scores[rival].get(c, 0.0) for c in weights}
        need = 100 * (totals[winner] - totals[rival])  # points x score units to remove
        sink = min(d, key=lambda c: d[c])
        if d[sink] >= 0:
            continue  # the rival leads nowhere: no weighting makes it win
        moves: list[Move] = []
        for c in sorted(d, key=lambda c: -d[c]):
            if need <= 1e-12 or c == sink or d[c] <= d[sink]:
                break
            take = min(weights[c], need / (d[c] - d[sink]))
            if take > 0:
                moves.append(Move(take, c, sink))
                need -= take * (d[c] - d[sink])
        if need > 1e-9:
            continue
        points = sum(m.points for m in moves)
        if best_points is None or points < best_points:
            best_points, out.flip_to, out.moves = points, rival, moves
    return out


def evaluate(spike: Spike, run: RunResult, weights: Mapping[str, int] | None = None) -> Decision:
    """Judge ``run`` by ``spike``'s declared criteria, gates and weights (the run's own weights unless given)."""
    from harness.plugin import DEFAULT_WEIGHTS

    known = {o.key for o in spike.options}
    options = [o for o in run.options if o in known]
    titles = {o.key: o.title for o in spike.options}
    declared = {c.name: c for c in criteria_of(spike)}
    weights = dict(weights or run.weights or spike.weights)
    criteria = [c for c in weights if c in declared]

    # 1. values and scores
    cells: dict[str, dict[str, Cell]] = {o: {} for o in options}
    for name in criteria:
        crit = declared[name]
        for o in options:
            parts: list[PartValue] = []
            missing = ""
            for p in crit.parts:
                try:
                    vals = source_values(p.source, run, o)
                except NotMeasured as exc:
                    missing = f"{p.label}: {exc}"
                    break
                value = float(statistics.median(vals))
                parts.append(PartValue(p, vals, value, p.utility.score(value)))
            if missing:
                cells[o][name] = Cell(name, None, [], missing)
            else:
                total_w = sum(pv.part.weight for pv in parts)
                cells[o][name] = Cell(name, sum(pv.part.weight * pv.score for pv in parts) / total_w, parts)

    # 3. not measured for some option: out for every option
    left_out = {}
    for name in criteria:
        gaps = [o for o in options if cells[o][name].score is None]
        if gaps:
            left_out[name] = "; ".join(f"not measured for {titles.get(o, o)}: {cells[o][name].missing}" for o in gaps)
    # ... and a part whose repeats spread past its max_spread for some option: it ranks nobody, so out for every option
    for name in criteria:
        if name in left_out:
            continue
        for i, p in enumerate(declared[name].parts):
            spread = [o for o in options if p.too_spread(cells[o][name].parts[i].repeats)]
            if not spread:
                continue
            why = "; ".join(
                f"{p.label} of {titles.get(o, o)} spread {p.show(min(pv.repeats))}-{p.show(max(pv.repeats))} over its repeats, "
                f"more than {p.max_spread:.0%} of its median"
                for o in spread
                if (pv := cells[o][name].parts[i])
            )
            for o in options:
                cell = cells[o][name]
                cell.parts[i] = dataclasses.replace(cell.parts[i], part=dataclasses.replace(p, weight=0.0))
                total_w = sum(pv.part.weight for pv in cell.parts)
                cell.score = sum(pv.part.weight * pv.score for pv in cell.parts) / total_w if total_w else None
            if any(cells[o][name].score is None for o in options):
                left_out[name] = why
                break
    measured = [c for c in criteria if c not in left_out]
    used = _renormalise(weights, measured)

    # 2. gates
    gates = {o: [_gate(g, run, o) for g in spike.gates] for o in options}
    eligible = [o for o in options if not any(g.status == "fail" for g in gates[o])]

    # 4. totals, pooled and per repeat
    totals: dict[str, float | None] = {o: (_totals(cells[o], used) if used else None) for o in options}
    n_rep = max((len(pv.repeats) for o in options for c in measured for pv in cells[o][c].parts), default=0)
    repeat_totals = {
        o: [sum(w * cells[o][c].score_at(k) for c, w in used.items()) / 100 for k in range(n_rep)] if n_rep >= 2 and used else []
        for o in options
    }

    # 5. ties on each criterion
    for name in measured:
        scored = [o for o in options if cells[o][name].score is not None]
        if not scored:
            continue
        top = max(scored, key=lambda o: cells[o][name].score or 0.0)
        cells[top][name].tied_best = True
        for o in scored:
            if o != top:
                same = abs((cells[o][name].score or 0.0) - (cells[top][name].score or 0.0)) < 0.05  # both at a utility's end
                cells[o][name].tied_best = same or all(
                    _part_tied(a, b)[0] for a, b in zip(cells[top][name].parts, cells[o][name].parts, strict=True)
                )

    ranking = sorted((o for o in eligible if totals[o] is not None), key=lambda o: -(totals[o] or 0.0))
    best = ranking[0] if ranking else None
    winners: list[str | None] = []
    if n_rep >= 2 and ranking:
        winners = [max(ranking, key=lambda o: repeat_totals[o][k]) for k in range(n_rep)]
    tie_margin = float(getattr(spike, "tie_margin", DEFAULT_TIE_MARGIN))
    tied_with: list[str] = []
    evidence: dict[str, str] = {}
    more = False
    noise = n_rep >= 2
    if best is not None:
        for other in ranking[1:]:
            a, b = [[t] for t in repeat_totals[best]], [[t] for t in repeat_totals[other]]
            wins = [k + 1 for k, w in enumerate(winners) if w == other]
            if not noise:
                gap = (totals[best] or 0.0) - (totals[other] or 0.0)
                if gap < tie_margin * (totals[best] or 0.0):
                    tied_with.append(other)
                    evidence[other] = f"the totals differ by {gap:.2f}, under {tie_margin:.0%} of the best"
                else:
                    evidence[other] = "one repeat: no noise estimate"
                continue
            sep = separate(a, b, min_effect=tie_margin)
            tie = tied(a, b, tie_margin) or sep.change > 0 or bool(wins)
            evidence[other] = _evidence_words(titles.get(best, best), titles.get(other, other), sep, tie, wins, tie_margin)
            if tie:
                tied_with.append(other)
                more |= sep.evidence not in ("below min effect", "same")

    # 6. sensitivity among the qualifying options
    pooled = {o: {c: cells[o][c].score or 0.0 for c in measured} for o in ranking}
    sens = [sensitivity("this spike's weights", used, pooled)]
    seed = _renormalise(DEFAULT_WEIGHTS, measured)
    if dict(weights) != dict(DEFAULT_WEIGHTS) and seed:
        sens.append(sensitivity("the seed's weights", seed, pooled))

    formulas = {c: _formula(declared[c]) for c in criteria}
    return Decision(
        spike.number,
        options,
        titles,
        criteria,
        {c: int(weights[c]) for c in criteria},
        used,
        left_out,
        cells,
        formulas,
        gates,
        totals,
        repeat_totals,
        winners,
        eligible,
        tied_with,
        evidence,
        noise,
        more,
        tie_margin,
        sens,
    )


def _evidence_words(a: str, b: str, sep: Separation, tie: bool, wins: list[int], margin: float) -> str:
    reps = f"{sep.n_a} vs {sep.n_b} repeats"
    if wins and tie:
        which = ", ".join(map(str, wins))
        return f"{b} has the best total in repeat{'s' if len(wins) > 1 else ''} {which}: the winner does not hold across repeats"
    if not tie:
        if sep.evidence == "apart":
            return f"separated: every repeat of {a} above every repeat of {b} ({reps}; a likely difference, too few repeats for a test)"
        if sep.evidence == "exact":
            return f"separated: every repeat gives {a} {sep.a:.2f} and {b} {sep.b:.2f}"
        return f"separated: {a} above {b} over the repeats ({sep.why})"
    if sep.change > 0 and sep.separated:
        return f"the per-repeat totals put {b} above {a} ({sep.why})"
    if sep.evidence in ("below min effect", "same"):
        return f"{b} is within {margin:.0%} of {a}: the medians of their per-repeat totals, {sep.a:.2f} and {sep.b:.2f}, differ by {abs(sep.change):.1%}"
    if sep.evidence == "too few repeats":
        return f"their per-repeat totals overlap ({sep.why})"
    if sep.evidence == "not significant":
        return f"their per-repeat totals do not differ significantly ({sep.why})"
    return sep.why
