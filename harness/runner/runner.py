"""The grid runner: an Optuna study is the trial ledger, one trial per grid point.

Workers run `study.optimize` with a GridSampler over point indices (the same seed on every
worker) and a MaxTrialsCallback, so each point completes once. A trial runs its stage chain;
each stage is a subprocess and is shared through its key: the first worker to need it trains it
under a lock, the others wait and reuse it. Failed trials are re-enqueued up to `retries` times.
Trials left RUNNING by a dead worker (SIGKILL, preemption) are failed and re-enqueued on restart.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from harness.grid.expand import Plan, StageNode
from harness.runner import stagedir
from harness.runner.launch import LaunchSettings, StageFailed, StageStopped, Watch, launch, stage_lock

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Layout:
    results: Path

    @property
    def stages(self) -> Path:
        return self.results / "stages"

    def stage_dir(self, node: StageNode) -> Path:
        return self.stages / node.dirname

    def journal(self, study: str) -> Path:
        return self.results / study / "optuna.journal"


def open_storage(url: str | None, layout: Layout, study: str):
    if url and "://" in url:
        # HARNESS_HEARTBEAT="INTERVAL,GRACE" seconds (default 10,30): a worker that stops beating for GRACE
        # seconds (killed, preempted, its machine gone) has its trial failed by Optuna's stale-trial check.
        interval, grace = (int(s) for s in os.environ.get("HARNESS_HEARTBEAT", "10,30").split(","))
        return optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=grace)
    path = Path(url) if url else layout.journal(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def check_journal(path: Path) -> None:
    """A corrupt ledger line is a one-line error naming it (bad-input tests): Optuna raises a traceback
    on it, and on every write after it. A last line without its newline is being appended: fine."""
    from harness.config.loader import ConfigError

    if not path.is_file():
        return
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return
            try:
                json.loads(line)
            except ValueError as err:
                raise ConfigError(f"corrupt Optuna journal line ({err}); move the file away to start the study "
                                  "afresh", file=str(path), line=number) from None


class LedgerGridSampler(optuna.samplers.GridSampler):
    """GridSampler that tolerates enqueued retries: Optuna's `after_trial` assumes every trial
    carries a grid id, which enqueued (fixed-parameter) trials do not."""

    def after_trial(self, study, trial, state, values):
        if "grid_id" in study._storage.get_trial_system_attrs(trial._trial_id):
            super().after_trial(study, trial, state, values)


def grid_sampler(n_points: int) -> optuna.samplers.GridSampler:
    # Same seed on every worker: otherwise workers draw the same points in different orders.
    return LedgerGridSampler({"point": list(range(n_points))}, seed=0)


def load_study(plan: Plan, storage) -> optuna.Study:
    if plan.grid.search is not None:  # search beyond grids: its sampler, pruner and direction
        from harness.grid.search import load_search_study
        return load_search_study(plan, storage)
    return optuna.create_study(study_name=plan.study, storage=storage, sampler=grid_sampler(len(plan.points)),
                               direction="maximize", load_if_exists=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True  # another machine's worker: RDB heartbeats cover it
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def point_of(trial) -> int | None:
    value = trial.params.get("point", trial.system_attrs.get("fixed_params", {}).get("point"))
    return None if value is None else int(value)


def recover(study: optuna.Study, plan: Plan, retries: int) -> dict:
    """Fail trials whose worker is dead, then enqueue one retry per failed point still within budget."""
    storage = study._storage
    failed_dead = 0
    if isinstance(storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not _owner_alive(trial.user_attrs.get("owner")):
            storage.set_trial_user_attr(trial._trial_id, "error", "worker died while running this trial")
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            failed_dead += 1
    return {"failed_dead_workers": failed_dead, "retries_enqueued": enqueue_retries(study, plan, retries)}


def _point_states(study: optuna.Study) -> dict[int, list]:
    states: dict[int, list] = {}
    for t in study.get_trials(deepcopy=False):
        p = point_of(t)
        if p is not None:
            states.setdefault(p, []).append(t.state)
    return states


def enqueue_retries(study: optuna.Study, plan: Plan, retries: int) -> int:
    S = optuna.trial.TrialState
    enqueued = 0
    for point, states in _point_states(study).items():
        if any(s in (S.COMPLETE, S.RUNNING, S.WAITING) for s in states):
            continue
        if states.count(S.FAIL) <= retries:
            study.enqueue_trial({"point": point}, skip_if_exists=False)
            enqueued += 1
    return enqueued


def settled(states: list, retries: int | None) -> bool:
    """A point is settled when complete, being run, or failed past its retry budget (retries None: never)."""
    S = optuna.trial.TrialState
    return any(s in (S.COMPLETE, S.RUNNING) for s in states) or (retries is not None and states.count(S.FAIL) > retries)


def remaining_points(study: optuna.Study, n_points: int, retries: int | None = None) -> int:
    S = optuna.trial.TrialState
    # Fix (fault tests): a point failed past its retries counts as taken, else a worker whose other points
    # are done loops forever, re-running it whenever GridSampler (exhausted) hands it out again.
    taken = {p for p, states in _point_states(study).items() if settled(states, retries)}
    waiting = any(t.state == S.WAITING for t in study.get_trials(deepcopy=False))
    return n_points - len(taken) + (1 if waiting else 0)


class Worker:
    """Runs trials until every point is taken. One per process; stages are its subprocesses."""

    def __init__(self, plan: Plan, layout: Layout, settings: LaunchSettings, rerun: set[str] = frozenset(),
                 objective: str | None = None, echo=print):
        self.plan, self.layout, self.settings, self.rerun = plan, layout, settings, set(rerun)
        self.objective_name, self.echo = objective or plan.grid.objective, echo

    def run_stage(self, node: StageNode, watch: Watch | None = None) -> float:
        out = self.layout.stage_dir(node)
        with stage_lock(out):
            if stagedir.is_done(out) and node.kind not in self.rerun:
                return 0.0
            if stagedir.is_done(out):
                (out / "DONE").unlink()
                self.rerun.discard(node.kind)  # once per run, not once per trial sharing it
            return launch(node.kind, *self._resolved(node, out), self.settings, self._eval_cfg(node), watch)

    def _model_dir(self, key: str) -> Path:
        return self.layout.stage_dir(self.plan.stages[key]) / "model"

    def _resolved(self, node: StageNode, out: Path) -> tuple[dict, Path]:
        config = json.loads(json.dumps(node.config))
        model = config.get("model")
        if isinstance(model, dict) and str(model.get("path", "")).startswith("stage:"):
            model["path"] = str(self._model_dir(model["path"][6:]).resolve())
        config.pop("output_dir", None)
        return config, out

    def _eval_cfg(self, node: StageNode) -> dict | None:
        if node.kind != "eval":
            return None
        return {**node.config, "model_dir": self._model_dir(node.parents[0]).resolve()}

    def _taken_elsewhere(self, trial: optuna.Trial, point: int) -> bool:
        others = [t.state for t in trial.study.get_trials(deepcopy=False) if point_of(t) == point and t.number != trial.number]
        return settled(others, self.plan.grid.execution.retries)  # fix: nor re-run one failed past its retries

    def run_trial(self, trial: optuna.Trial) -> float:
        point = self.plan.points[trial.suggest_categorical("point", list(range(len(self.plan.points))))]
        if self._taken_elsewhere(trial, point.index):
            # GridSampler hands out a started point again once all are started; never run it twice.
            trial.set_user_attr("duplicate", True)
            raise optuna.TrialPruned(f"point {point.index} is already taken by another trial")
        return self.run_point(trial, point)

    def run_point(self, trial: optuna.Trial, point) -> float:
        """Run a point's stage chain as this trial; returns the objective."""
        trial.set_user_attr("owner", _owner())
        trial.set_user_attr("axes", point.axes)
        trial.set_user_attr("started_at", _now())
        records = [self._record(self.plan.stages[k], "pending") for k in self.plan.chains[point.index]]
        trial.set_user_attr("stages", records)
        try:
            for i, record in enumerate(records):
                record["status"] = "running"
                record["started"] = time.time()
                trial.set_user_attr("stages", records)
                record["seconds"] = self.run_stage(self.plan.stages[record["stage_key"]], self.stage_watch(trial, record))
                record["ended"] = time.time()
                record["status"] = "complete"
                self.after_stage(trial, records, i)
        except StageStopped as err:
            record["ended"] = time.time()
            record["seconds"] = record["ended"] - record["started"]
            self.stopped(trial, records, i, err)
            raise
        except StageFailed as err:
            record["status"] = "failed"
            trial.set_user_attr("stages", records)
            trial.set_user_attr("error", str(err))
            trial.set_user_attr("finished_at", _now())
            self.echo(f"trial {trial.number} point {point.index} FAILED: {err}")
            raise
        trial.set_user_attr("stages", records)
        trial.set_user_attr("finished_at", _now())
        value = self.objective_value(records)
        self.echo(f"trial {trial.number} point {point.index} complete ({self.objective_name or 'objective'}={value:.4f}) "
                  + " ".join(f"{k}={v}" for k, v in point.axes.items()))
        return value

    def after_stage(self, trial: optuna.Trial, records: list[dict], index: int) -> None:
        """Hook after each finished stage: a search reports intermediate evals here and may prune."""

    def stage_watch(self, trial: optuna.Trial, record: dict) -> Watch | None:
        """Polled while a stage runs (None: the grid runner never stops a stage midway)."""
        return None

    def stopped(self, trial: optuna.Trial, records: list[dict], index: int, err: StageStopped) -> None:
        """Hook when a stage_watch stopped a stage: a search records the trial as pruned."""

    def _record(self, node: StageNode, status: str) -> dict:
        return {"kind": node.kind, "name": node.name, "stage_key": node.key,
                "path": str(self.layout.stage_dir(node).resolve()), "status": status, "seconds": None}

    def objective_value(self, records: list[dict]) -> float:
        return self.metric_value(records, self.objective_name)

    @staticmethod
    def metric_value(records: list[dict], name: str | None) -> float:
        """BENCHMARK.METRIC `name` (None: the first metric) of the last eval stage among `records`."""
        evals = [r for r in records if r["kind"] == "eval"]
        if not evals:
            return 0.0
        rows = json.loads((Path(evals[-1]["path"]) / "metrics.json").read_text())
        rows = [r for r in rows if r.get("value") is not None]  # a benchmark whose judgments all failed
        for row in rows:
            if name in (None, f"{row['benchmark']}.{row['metric']}"):
                return float(row["value"])
        return float(rows[0]["value"]) if rows else 0.0


def work(plan: Plan, layout: Layout, storage, settings: LaunchSettings, retries: int, rerun=(), echo=print) -> None:
    """A worker's loop: take trials until none remain, re-enqueuing failures within the retry budget."""
    if plan.grid.search is not None:  # search beyond grids: sampled points, n_trials of them
        from harness.grid.search import work_search
        return work_search(plan, layout, storage, settings, retries, rerun, echo)
    study = load_study(plan, storage)
    worker = Worker(plan, layout, settings, set(rerun), echo=echo)
    n = len(plan.points)
    while remaining_points(study, n, retries) > 0:
        study.optimize(worker.run_trial, n_trials=1, catch=(StageFailed,),
                       callbacks=[optuna.study.MaxTrialsCallback(n, states=(optuna.trial.TrialState.COMPLETE,))])
        enqueue_retries(study, plan, retries)
        if _duplicate_guard(study, n):
            break


def _duplicate_guard(study: optuna.Study, n_points: int) -> bool:
    S = optuna.trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(S.COMPLETE,))) >= n_points
