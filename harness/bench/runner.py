"""`harness bench runner`: the demo grid run cold, timed.

Reports the demo's wall time, the runner's overhead (wall time during which no stage subprocess
ran: planning, Optuna bookkeeping, ingest) and SFT runs executed vs distinct SFT configs (must
be equal: shared stages train once).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from harness.bench import bench

DEMO = Path(__file__).resolve().parents[2] / "ablations" / "toy" / "demo.yaml"


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            total += (current_end - current_start) if current_end is not None else 0.0
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + ((current_end - current_start) if current_end is not None else 0.0)


def sft_runs_executed(results: Path) -> int:
    return sum(log.read_text(errors="replace").count(" train sft ") for log in results.glob("stages/sft-*/log"))


def run(grid_file: Path, results: Path, overrides=()) -> dict:
    from harness.grid.expand import load_plan
    from harness.runner.runner import Layout, load_study, open_storage
    from harness.runner.study import run_grid

    shutil.rmtree(results, ignore_errors=True)
    plan = load_plan(grid_file, [f"results_dir={results}", *overrides])
    start = time.time()
    summary = run_grid(plan, [f"results_dir={results}", *overrides])
    wall = time.time() - start
    study = load_study(plan, open_storage(None, Layout(results), plan.study))
    intervals = [(r["started"], r["ended"]) for t in study.get_trials(deepcopy=False)
                 for r in t.user_attrs.get("stages", []) if r.get("ended") and r.get("seconds")]
    busy = busy_seconds(intervals)
    return {
        "grid": str(grid_file),
        "demo_wall_seconds": wall,
        "stage_busy_seconds": busy,
        "runner_overhead_seconds": wall - busy,
        "runner_overhead_fraction": (wall - busy) / wall if wall else 0.0,
        "sft_runs_executed": sft_runs_executed(results),
        "sft_distinct_configs": plan.counts().get("sft", 0),
        "trials": summary["states"],
        "targets": {"overhead<5%": (wall - busy) / wall < 0.05 if wall else False},
    }


@bench("runner")
def bench_runner(args) -> dict:
    results = Path("results") / "bench" / "runner"
    result = run(DEMO, results)
    print(f"demo wall time {result['demo_wall_seconds']:.0f}s; stages busy {result['stage_busy_seconds']:.0f}s; "
          f"runner overhead {result['runner_overhead_seconds']:.1f}s ({100 * result['runner_overhead_fraction']:.1f}%, target < 5%)")
    print(f"SFT runs executed {result['sft_runs_executed']} vs distinct SFT configs {result['sft_distinct_configs']}")
    return result
