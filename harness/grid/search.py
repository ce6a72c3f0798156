"""Search beyond grids: a grid file's `search:` section (harness/config/search.py) makes the runner
sample points with Optuna (TPE, random, or a grid sampler) for `n_trials` trials instead of
expanding the grid.

Each trial samples its axes define-by-run (ranges, choices, then the conditional axes whose `when`
holds), and the point is resolved into the stage chain a grid point would get (expand.add_point),
so stages that do not depend on the sampled axes keep their keys and are shared: a β/lr search
trains one SFT. The trial ledger, workers, locks, retries, results store and reports are the grid
runner's.

Pruning (`search.pruner`) works at one of two grains:
- inside the DPO stage, when `pruner.metric` names one of its curves (`dpo.eval_rewards/margins`
  with `dpo.eval_every`): the runner tails the stage's curves.jsonl while it trains, reports each new
  value at step = DPO step, and stops the stage (SIGTERM) once the pruner says so;
- at stage boundaries otherwise: after an eval stage that is not the trial's last (with
  `eval.after: [preference, final]`, the eval of the DPO model before online DPO), the metric
  (default: the objective) is reported at step = training stages done.
A pruned trial skips its remaining stages and is recorded as pruned, not failed; a stopped stage
keeps no DONE, so no other trial reads it as a result.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import optuna

from harness.config.loader import ConfigError, line_of
from harness.config.search import RangeSpec, SearchSpec
from harness.grid.expand import Plan, add_point
from harness.runner.launch import StageFailed, StageStopped
from harness.runner.runner import Worker, _now

S = optuna.trial.TrialState
SCALAR = (str, int, float, bool, type(None))


# ---------------------------------------------------------------- the search space

def space_of(grid) -> dict[str, RangeSpec | list]:
    """Axes the sampler varies: the grid's lists, then `search.space` (ranges and choices)."""
    return {**grid.grid, **grid.search.space}


def suggest_axes(trial: optuna.Trial, grid) -> dict:
    """A point's axes, sampled define-by-run: conditional axes only when their `when` holds."""
    axes = {axis: _suggest(trial, axis, spec) for axis, spec in space_of(grid).items()}
    for cond in grid.conditional:
        if all(axes.get(k, getattr(grid, k, None)) == v for k, v in cond.when.items()):
            axes.update({axis: _suggest(trial, axis, values) for axis, values in cond.grid.items()})
    return {**axes, "seed": grid.seeds[0]}


def _suggest(trial: optuna.Trial, axis: str, spec: RangeSpec | list):
    if isinstance(spec, list):
        return trial.suggest_categorical(axis, spec)
    if spec.type == "int":
        return trial.suggest_int(axis, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(axis, spec.low, spec.high, step=spec.step, log=spec.log)


def make_sampler(spec: SearchSpec, grid) -> optuna.samplers.BaseSampler:
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.startup_trials())
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.GridSampler(dict(space_of(grid)), seed=spec.seed)


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p is None or p.type == "none":
        return optuna.pruners.NopPruner()
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def load_search_study(plan: Plan, storage) -> optuna.Study:
    spec = plan.grid.search
    return optuna.create_study(study_name=plan.study, storage=storage, sampler=make_sampler(spec, plan.grid),
                               pruner=make_pruner(spec), direction=spec.direction, load_if_exists=True)


# ---------------------------------------------------------------- planning (checks, description)

def build_search_plan(grid, file: str, lines) -> Plan:
    """A plan with no points yet (they are sampled as trials run), after checking the search space:
    its axes name pipeline stages, and its corner points (every range at low, then at high) resolve
    into valid stage configs."""
    _check_search(grid, file, lines)
    probe = Plan(grid, file, [], {}, [])
    for corner in corners(grid):
        try:
            add_point(probe, corner)
        except ConfigError as err:
            axis = next((a for a in grid.search.space if err.key in (a, f"pipeline.{a}")), None)
            if axis is None:
                raise
            raise ConfigError(err.reason, file=file, line=line_of(lines, ("search", "space", axis)), key=f"search.space.{axis}") from None
    return Plan(grid, file, [], {}, [])


def _check_search(grid, file: str, lines) -> None:
    def fail(reason: str, *path) -> None:
        raise ConfigError(reason, file=file, line=line_of(lines, path), key=".".join(map(str, path)))

    spec = grid.search
    if grid.zip:
        fail("zip axes cannot be searched: list the combinations as one axis's choices, or use conditional", "zip")
    if len(grid.seeds) > 1:
        fail(f"a search runs one seed (got {len(grid.seeds)}): repeat the search with another seed", "seeds")
    for axis, choices in space_of(grid).items():
        path = ("search", "space", axis) if axis in spec.space else ("grid", axis)
        head = axis.split(".")[0]
        if axis not in ("method", "online") and head not in grid.pipeline:
            fail(f"axis names no stage of the pipeline (stages here: {', '.join(sorted(grid.pipeline))})", *path)
        if isinstance(choices, list) and not all(isinstance(c, SCALAR) for c in choices):
            fail("search choices must be numbers, strings or booleans", *path)
        if spec.sampler == "grid" and isinstance(choices, RangeSpec):
            fail("sampler grid needs lists of values, not ranges", *path)
    if spec.sampler == "grid" and grid.conditional:
        fail("sampler grid cannot sample conditional axes: use tpe or random", "search", "sampler")
    if spec.pruner is not None and spec.pruner.metric:
        _check_pruner_metric(grid, spec.pruner.metric, fail)


def _check_pruner_metric(grid, metric: str, fail) -> None:
    stage, _, curve = metric.partition(".")
    if not curve:
        fail(f"pruner metric {metric!r} must be BENCHMARK.METRIC or dpo.CURVE", "search", "pruner", "metric")
    if stage not in grid.pipeline or stage == "eval":
        return  # a benchmark metric, reported at the stage boundaries
    if stage != "dpo":
        fail(f"pruning inside a stage watches the DPO stage's curves (dpo.CURVE), not {stage}'s", "search", "pruner", "metric")
    if curve.startswith("eval_") and not (grid.pipeline["dpo"].get("eval_every") or "dpo.eval_every" in space_of(grid)):
        fail(f"{metric} is a held-out eval curve: set pipeline.dpo.eval_every (and eval_pairs)", "search", "pruner", "metric")


def corners(grid) -> list[dict]:
    """Two probe points: every range at its low end and the first choice, then high ends and last choices;
    conditional axes are added whenever their `when` holds."""
    out = []
    for end in (0, -1):
        axes = {a: (s[end] if isinstance(s, list) else (s.low, s.high)[end]) for a, s in space_of(grid).items()}
        axes = {a: int(v) if isinstance(space_of(grid)[a], RangeSpec) and space_of(grid)[a].type == "int" else v
                for a, v in axes.items()}
        for cond in grid.conditional:
            if all(axes.get(k, getattr(grid, k, None)) == v for k, v in cond.when.items()):
                axes.update({a: vs[end] for a, vs in cond.grid.items()})
        out.append({**axes, "seed": grid.seeds[0]})
    return out


def _describe_pruner(grid) -> str:
    metric = PruningMetric.of(grid)
    if metric is None:
        return ""
    where = "while the DPO stage trains" if metric.stage_kind else "at the evals before a trial's last"
    return f", pruner {grid.search.pruner.type} on {metric.name} {where}"


def describe_search(plan: Plan) -> str:
    spec, grid = plan.grid.search, plan.grid
    out = [f"study {plan.study}: search with {spec.sampler} sampler (seed {spec.seed}), {spec.n_trials} trials, "
           f"{spec.direction} {spec.objective}"
           + (f", TPE's first {spec.startup_trials()} trials random" if spec.sampler == "tpe" else "")
           + _describe_pruner(grid)]
    for axis, s in space_of(grid).items():
        out.append(f"  {axis}: " + (f"one of {s}" if isinstance(s, list) else
                                    f"{s.type} in [{s.low:g}, {s.high:g}]" + (" (log)" if s.log else "")))
    for cond in grid.conditional:
        out.append(f"  when {cond.when}: " + ", ".join(f"{a} one of {v}" for a, v in cond.grid.items()))
    probe = Plan(grid, plan.file, [], {}, [])
    for corner in corners(grid):
        add_point(probe, corner)
    shared = [k for k in probe.chains[0] if k in probe.chains[1]]
    if shared:
        out.append("  stages every trial shares (independent of the sampled axes): "
                   + ", ".join(probe.stages[k].dirname for k in shared))
    out.append(f"  seed {grid.seeds[0]}")
    return "\n".join(out)


# ---------------------------------------------------------------- running

@dataclass(frozen=True)
class PruningMetric:
    """What the pruner is fed: a benchmark metric at stage boundaries, or a curve of a training
    stage (`stage_kind` set) while it runs. `sign` turns the metric into the search's direction."""

    name: str
    stage_kind: str | None
    curve: str | None
    sign: float

    @classmethod
    def of(cls, grid) -> "PruningMetric | None":
        spec = grid.search
        if spec.pruner is None or spec.pruner.type == "none":
            return None
        name = spec.pruner.metric or spec.objective
        sign = -1.0 if spec.pruner.direction not in (None, spec.direction) else 1.0
        stage, _, curve = name.partition(".")
        in_stage = stage in grid.pipeline and stage != "eval"
        return cls(name, stage if in_stage else None, curve if in_stage else None, sign)


class CurveTail:
    """New values of one curve in a stage's curves.jsonl, read incrementally while the stage writes it."""

    def __init__(self, path: Path, curve: str):
        self.path, self.curve, self.offset = Path(path), curve, 0

    def new_values(self) -> list[tuple[int, float]]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete.encode())
        rows = (json.loads(line) for line in complete.splitlines() if line.strip())
        return [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == self.curve]


class SearchWorker(Worker):
    """The grid Worker with sampled points, and pruning at intermediate values (PruningMetric)."""

    def __init__(self, plan: Plan, layout, settings, rerun=frozenset(), echo=print):
        super().__init__(plan, layout, settings, rerun, objective=plan.grid.search.objective, echo=echo)
        self.pruning = PruningMetric.of(plan.grid)
        self.reported: dict[int, float] = {}  # this trial's intermediate values, by step

    def run_trial(self, trial: optuna.Trial) -> float:
        self.reported = {}
        point = add_point(self.plan, suggest_axes(trial, self.plan.grid))
        return self.run_point(trial, point)

    def _watched(self, record: dict) -> bool:
        return self.pruning is not None and self.pruning.stage_kind == record["kind"]

    def _tail(self, record: dict) -> CurveTail:
        return CurveTail(Path(record["path"]) / "curves.jsonl", self.pruning.curve)

    def stage_watch(self, trial: optuna.Trial, record: dict):
        """While the watched stage trains: report its new curve values; True (stop it) once pruned."""
        if not self._watched(record):
            return None
        tail = self._tail(record)
        return lambda: self._report(trial, tail.new_values())

    def _report(self, trial: optuna.Trial, values: list[tuple[int, float]]) -> bool:
        """Report the steps not reported yet (a resumed stage logs its steps again); True when, with
        something new reported, the pruner says stop."""
        before = len(self.reported)
        for step, value in values:
            if step not in self.reported:
                self.reported[step] = self.pruning.sign * value
                trial.report(self.reported[step], step)
        return len(self.reported) > before and trial.should_prune()

    def after_stage(self, trial: optuna.Trial, records: list[dict], index: int) -> None:
        record = records[index]
        if self._watched(record):  # values written after the last poll, or all of a stage reused from disk
            if self._report(trial, self._tail(record).new_values()):
                self._prune(trial, records, index, f"after {record['name']}")
            return
        if self.pruning is None or self.pruning.stage_kind or record["kind"] != "eval" or index == len(records) - 1:
            return
        step = sum(r["kind"] != "eval" for r in records[:index])
        if self._report(trial, [(step, self.metric_value([record], self.pruning.name))]):
            self._prune(trial, records, index, f"after {record['name']}")

    def stopped(self, trial: optuna.Trial, records: list[dict], index: int, err: StageStopped) -> None:
        records[index]["status"] = "pruned"
        self._prune(trial, records, index, f"during {records[index]['name']}")

    def _prune(self, trial: optuna.Trial, records: list[dict], index: int, when: str) -> None:
        for later in records[index + 1:]:
            later["status"] = "skipped"
        last_step, value = max(self.reported.items())
        trial.set_user_attr("stages", records)
        trial.set_user_attr("pruned_after", records[index]["name"])
        trial.set_user_attr("pruned_at", {"when": when, "step": last_step, "metric": self.pruning.name,
                                          "value": self.pruning.sign * value})
        trial.set_user_attr("finished_at", _now())
        message = f"pruned {when} at step {last_step} ({self.pruning.name}={self.pruning.sign * value:.4f})"
        self.echo(f"trial {trial.number} {message}")
        raise optuna.TrialPruned(message)


def counts(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def enqueue_search_retries(study: optuna.Study, retries: int) -> int:
    """Re-enqueue a failed trial's sampled params (once per failure within `retries`) unless a trial
    with the same params is waiting, running or finished."""
    trials = study.get_trials(deepcopy=False)
    key = {t.number: json.dumps(t.params or t.system_attrs.get("fixed_params", {}), sort_keys=True) for t in trials}
    enqueued = 0
    for params in {key[t.number] for t in trials if t.state == S.FAIL}:
        same = [t for t in trials if key[t.number] == params]
        if any(t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING) for t in same):
            continue
        if sum(t.state == S.FAIL for t in same) <= retries:
            study.enqueue_trial(json.loads(params), skip_if_exists=False)
            enqueued += 1
    return enqueued


def work_search(plan: Plan, layout, storage, settings, retries: int, rerun=(), echo=print) -> None:
    """A worker's loop: trials until n_trials are complete or pruned (failures retried within
    `retries`; after n_trials failures the search gives up)."""
    spec = plan.grid.search
    study = load_search_study(plan, storage)
    worker = SearchWorker(plan, layout, settings, set(rerun), echo=echo)
    finished = optuna.study.MaxTrialsCallback(spec.n_trials, states=(S.COMPLETE, S.PRUNED))
    while True:
        c = counts(study)
        if c.get("complete", 0) + c.get("pruned", 0) + c.get("running", 0) >= spec.n_trials and not c.get("waiting"):
            return
        if c.get("fail", 0) >= spec.n_trials:
            echo(f"search {plan.study}: {c['fail']} failed trials, giving up")
            return
        study.optimize(worker.run_trial, n_trials=1, catch=(StageFailed,), callbacks=[finished])
        enqueue_search_retries(study, retries)


def search_summary(study: optuna.Study, plan: Plan) -> dict:
    spec = plan.grid.search
    trials = study.get_trials(deepcopy=False)
    states = {("failed" if k == "fail" else k): v for k, v in counts(study).items()}
    done = [t for t in trials if t.state == S.COMPLETE]
    best = (max if spec.direction == "maximize" else min)(done, key=lambda t: t.value) if done else None
    stage_seconds = sum(r["seconds"] or 0 for t in trials for r in t.user_attrs.get("stages", []))
    finished = states.get("complete", 0) + states.get("pruned", 0)
    return {"study": plan.study, "points": spec.n_trials, "states": states, "stage_seconds": stage_seconds,
            "ok": finished >= spec.n_trials, "objective": spec.objective,
            "best": {"number": best.number, "value": best.value, "axes": best.user_attrs.get("axes")} if best else None,
            "first_value": done[0].value if done else None}


def search_status_lines(plan: Plan, storage, layout) -> list[str]:
    study = load_search_study(plan, storage)
    lines = [describe_search(plan).splitlines()[0]]
    for t in study.get_trials(deepcopy=False):
        axes = " ".join(f"{k}={_short(v)}" for k, v in (t.user_attrs.get("axes") or t.params).items())
        value = "" if t.value is None or math.isnan(t.value) else f" {plan.grid.search.objective}={t.value:.4f}"
        lines.append(f"trial {t.number:>3} {t.state.name.lower():<9}{value} {axes}")
        for r in t.user_attrs.get("stages", []):
            lines.append(f"      {r['name']:<16} {r['status']:<9} {r['path']}")
        if t.user_attrs.get("error") and t.state != S.COMPLETE:
            lines.append(f"      error: {t.user_attrs['error']}")
    return lines


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["SearchWorker", "build_search_plan", "load_search_study", "make_sampler", "suggest_axes", "work_search"]
