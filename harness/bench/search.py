"""`harness bench search`: TPE vs random search on the toy lab, over DPO's β and learning rate.

Every trial is a real DPO stage (`harness train dpo`'s code, in this process) from one shared,
cached toy SFT model; the objective is the DPO reward margin on 64 pairs held out of training,
`eval_rewards/margins` at the stage's last step. (Toy accuracy after so short a DPO stage moves by
less than its own standard error, and training-batch margins are noisy, so a sampler comparison on
either would compare noise.) Both samplers come from the grid file's `search:` machinery
(harness/grid/search.py) with the same seeds, so their first (random) trials coincide. Reported per sampler: how many trials after the first beat the first
trial's objective, on how many seeds the best beat the first, and the mean first and best values.
Trial values are cached by their settings under $HARNESS_CACHE/search-bench-trial.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness.bench import bench

SFT = {"model": {"path": "toy"}, "data": [{"source": "toy:sft_mix", "size": 2000, "seed": 0}], "packing": "none",
       "lr": 2e-3, "batch_size": 32, "micro_batch_size": 32, "max_steps": 150, "lr_scheduler": "constant",
       "max_length": 128, "log_every": 50, "threads": 2}
DPO = {"data": [{"source": "toy:prefs", "size": 320, "seed": 0}], "batch_size": 16, "micro_batch_size": 16,
       "max_steps": 16, "max_length": 128, "log_every": 4, "threads": 1, "ref_cache": False,
       "eval_every": 16, "eval_pairs": 64}
SPACE = {"dpo.beta": {"low": 0.01, "high": 1.0, "log": True}, "dpo.lr": {"low": 1e-5, "high": 1e-2, "log": True}}
OBJECTIVE = "eval_rewards/margins"


def search_grid(sampler: str, n_trials: int, seed: int, startup: int | None = None):
    from harness.config.grid import GridConfig

    search = {"sampler": sampler, "n_trials": n_trials, "objective": "dpo.reward_margin", "seed": seed, "space": SPACE}
    if startup is not None:
        search["n_startup_trials"] = startup
    return GridConfig.model_validate({"pipeline": {"dpo": DPO}, "search": search})


def sft_start() -> Path:
    """The shared SFT model (trained once per machine, cached)."""
    from harness.toylab.build import build_once

    def build(out: Path) -> None:
        _train("sft", SFT, out / "stage")

    return build_once("search-bench-sft", SFT, build) / "stage" / "model"


def _train(kind: str, config: dict, out: Path) -> None:
    import yaml

    from harness.runner.stages import train_stage

    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{kind}.yaml").write_text(yaml.safe_dump(config))
    train_stage(kind, str(out.parent / f"{kind}.yaml"), [], str(out))


def reward_margin(stage_dir: Path) -> float:
    import pandas as pd

    curves = pd.read_parquet(stage_dir / "curves.parquet")
    return float(curves[curves["name"] == OBJECTIVE].sort_values("step")["value"].iloc[-1])


def objective_value(beta: float, lr: float, start: Path) -> float:
    """The DPO reward margin after training at (β, lr) from `start`; cached by the full settings."""
    from harness.toylab.build import build_once

    config = {**DPO, "model": {"path": str(start)}, "beta": beta, "lr": lr}

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _train("dpo", config, Path(tmp) / "stage")
            (out / "value.json").write_text(json.dumps(reward_margin(Path(tmp) / "stage")))

    spec = {**config, "model": {"path": start.parent.parent.name}, "objective": OBJECTIVE}
    return json.loads((build_once("search-bench-trial", spec, build) / "value.json").read_text())


def run_search(sampler: str, seed: int, n_trials: int, start: Path, startup: int | None = None):
    """One search: an Optuna study driven by the grid file's search machinery."""
    import optuna

    from harness.grid.search import make_sampler, suggest_axes

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = search_grid(sampler, n_trials, seed, startup)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(grid.search, grid))
    study.optimize(lambda t: objective_value(*_beta_lr(suggest_axes(t, grid)), start), n_trials=n_trials)
    return study


def search_values(sampler: str, seed: int, n_trials: int, start: Path, startup: int | None = None) -> list[float]:
    """One search's trial values, in order (a process pool's unit of work)."""
    return [t.value for t in run_search(sampler, seed, n_trials, start, startup).trials]


def _beta_lr(axes: dict) -> tuple[float, float]:
    return axes["dpo.beta"], axes["dpo.lr"]


def _run_row(seed: int, values: list[float]) -> dict:
    return {"seed": seed, "first": values[0], "best": max(values), "values": values, "finished": len(values),
            "later_better": sum(v > values[0] for v in values[1:]), "improved": max(values[1:]) > values[0]}


def _sampler_summary(rows: list[dict], n_trials: int) -> dict:
    return {"runs": rows, "later_better": sum(r["later_better"] for r in rows), "later_trials": len(rows) * (n_trials - 1),
            "improved_on_first": sum(r["improved"] for r in rows),
            "mean_first": sum(r["first"] for r in rows) / len(rows), "mean_best": sum(r["best"] for r in rows) / len(rows)}


def compare(n_trials: int = 6, seeds=(0, 1, 2), startup: int | None = None, workers: int = 2, echo=print) -> dict:
    """TPE and random searches over the same seeds. Searches run in `workers` 1-thread processes
    (TPE's first, so random's startup trials, the same as TPE's for a seed, come from the cache)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    start = sft_start()
    jobs = [(sampler, seed) for sampler in ("tpe", "random") for seed in seeds]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {job: pool.submit(search_values, *job, n_trials, start, startup) for job in jobs}
        values = {job: future.result() for job, future in futures.items()}
    out: dict = {"n_trials": n_trials, "seeds": list(seeds), "startup_trials": startup, "space": SPACE,
                 "objective": OBJECTIVE, "dpo": {k: v for k, v in DPO.items() if k != "data"}, "samplers": {}}
    for sampler in ("tpe", "random"):
        for seed in seeds:
            echo(f"{sampler:<6} seed {seed}: " + " ".join(f"{v:.3f}" for v in values[sampler, seed]))
        out["samplers"][sampler] = _sampler_summary([_run_row(seed, values[sampler, seed]) for seed in seeds], n_trials)
    return out


@bench("search")
def search_bench(args) -> dict:
    quick = getattr(args, "quick", False)
    result = compare(n_trials=4 if quick else 16, seeds=(0, 1) if quick else (0, 1, 2, 3, 4), startup=None if quick else 4)
    for name, s in result["samplers"].items():
        print(f"{name}: {s['later_better']}/{s['later_trials']} later trials beat their search's first trial; best beat "
              f"the first on {s['improved_on_first']}/{len(s['runs'])} seeds; mean first {s['mean_first']:.3f}, "
              f"mean best {s['mean_best']:.3f}")
    return result
