"""`harness bench all [--json] [--quick]`: every benchmark, one report, `results/bench/REPORT.md`.

Runs the packing, dpo, search and runner benchmarks, then measures what they do not: DuckDB ingest and query
time for a study with 1M metric rows (the real `harness ingest` / `harness query` code on a real
Optuna journal), eval throughput in answers/s on the toy model, and on a GPU the MFU of SFT and DPO
steps of a ~100M-parameter Llama with and without flash-attn and vllm's generation tokens/s (without
a GPU these are reported as "n/a (no GPU)"). The report is a table of every figure, its target and
whether it is met, plus the machine it ran on. A benchmark that fails is a FAIL row with its error.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harness.bench import BENCHMARKS, bench

REPORT = Path("results") / "bench" / "REPORT.md"
SECTIONS = ("store", "eval", "gpu", "packing", "dpo", "search", "runner")  # quick ones first; the demo grid last
NO_GPU = "n/a (no GPU)"


@dataclass
class Figure:
    section: str
    name: str
    value: str
    target: str = "—"
    status: str = "—"  # PASS | FAIL | — (no target) | n/a


def check(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------- the benchmarks that exist

def packing_figures(r: dict) -> list[Figure]:
    iso, ratio = r["modes"]["isolated"], r["useful_fraction_ratio"]
    return [Figure("packing", "isolated packing: useful fraction of positions", f"{iso['useful_fraction']:.3f}", "≥ 0.97",
                   check(iso["useful_fraction"] >= 0.97)),
            Figure("packing", "isolated vs none: real tokens/s", f"{r['isolated_gain_over_none']:.2f}×",
                   f"≥ 0.9 × useful-fraction ratio = {0.9 * ratio:.2f}×", check(r["isolated_gain_over_none"] >= 0.9 * ratio))]


def dpo_figures(r: dict) -> list[Figure]:
    w, wo = r["ref_cache_sweep_seconds_with"], r["ref_cache_sweep_seconds_without"]
    saving = 1 - w / wo if wo else 0.0
    passes = r.get("sweep", {}).get("with", {}).get("ref_passes")
    return [Figure("dpo", "padding-free vs TRL padded DPO: tokens/s", f"{r['speedup']:.2f}×", "≥ 1.5×", check(r["speedup"] >= 1.5)),
            Figure("dpo", "step-1 loss |padding-free − padded|", f"{r['loss_abs_diff']:.1e}", "≤ 1e-4",
                   check(r["loss_abs_diff"] <= 1e-4)),
            Figure("dpo", "4-point β sweep, reference cache on vs off", f"{w:.1f}s vs {wo:.1f}s ({100 * saving:.0f}% saved"
                   + (f", {passes} reference pass)" if passes is not None else ")"), "cache faster; 1 reference pass",
                   check(w < wo and passes in (None, 1)))]


def search_figures(r: dict) -> list[Figure]:
    tpe, rnd = r["samplers"]["tpe"], r["samplers"]["random"]
    runs = f"{r['n_trials']} trials × {len(r['seeds'])} seeds"
    return [Figure("search", f"later trials beating their search's first, TPE vs random ({runs})",
                   f"{tpe['later_better']}/{tpe['later_trials']} vs {rnd['later_better']}/{rnd['later_trials']}",
                   "TPE more often", check(tpe["later_better"] > rnd["later_better"])),
            Figure("search", "mean best held-out DPO reward margin, TPE vs random",
                   f"{tpe['mean_best']:.2f} vs {rnd['mean_best']:.2f}")]


def runner_figures(r: dict) -> list[Figure]:
    frac = r["runner_overhead_fraction"]
    return [Figure("runner", f"grid wall time ({Path(r['grid']).name})", f"{r['demo_wall_seconds']:.0f}s"),
            Figure("runner", "runner overhead (wall time with no stage running)",
                   f"{r['runner_overhead_seconds']:.1f}s ({100 * frac:.1f}%)", "< 5%", check(frac < 0.05)),
            Figure("runner", "SFT runs executed vs distinct SFT configs",
                   f"{r['sft_runs_executed']} vs {r['sft_distinct_configs']}", "equal",
                   check(r["sft_runs_executed"] == r["sft_distinct_configs"]))]


QUICK_GRID = """study: bench_quick
method: none
execution: {{threads_per_worker: 1}}
pipeline:
  sft: {{data: [{{source: "toy:sft_mix", size: 64}}], packing: none, max_steps: 3, batch_size: 8, micro_batch_size: 8,
        max_length: 96, log_every: 1}}
  eval: {{suite: [toy], limit: 4}}
grid:
  sft.lr: [1.0e-3, 2.0e-3]
"""


def run_runner(args) -> dict:
    """The runner benchmark (the toy demo grid); with --quick a two-point grid instead of the demo."""
    if not getattr(args, "quick", False):
        return BENCHMARKS["runner"](args)
    from harness.bench import runner

    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "bench_quick.yaml"
        grid.write_text(QUICK_GRID.format())
        return runner.run(grid, Path("results") / "bench" / "runner_quick")


# ---------------------------------------------------------------- the results store: 1M metric rows

def synthetic_study(root: Path, trials: int, rows_per_trial: int, stage_dirs: int = 10) -> Path:
    """An Optuna journal with `trials` complete trials as the runner leaves them (axes, stage records, one
    DONE eval stage each), the eval stages holding `rows_per_trial` metric rows each."""
    import optuna

    from harness.runner import stagedir

    results = root / "results"
    stages = []
    for i in range(stage_dirs):
        out = results / "stages" / f"eval-bench{i:04d}"
        rows = [{"benchmark": "bench", "metric": f"m{j:05d}", "value": (i + j) % 100 / 100, "stderr": 0.01, "n": 100,
                 "failures": 0} for j in range(rows_per_trial)]
        stagedir.atomic_write_json(out / "metrics.json", rows)
        stagedir.atomic_write_json(out / "manifest.json", {"kind": "eval", "config": {"suite": ["bench"]}})
        stagedir.mark_done(out)
        stages.append({"kind": "eval", "name": "eval:final", "stage_key": f"bench{i:04d}", "path": str(out.resolve()),
                       "status": "complete", "seconds": 1.0})
    journal = results / "bench" / "optuna.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
    for t in range(trials):
        trial = study.ask({"point": optuna.distributions.IntDistribution(0, trials)})
        for key, value in {"axes": {"dpo.beta": [0.05, 0.1, 0.2, 0.5][t % 4], "seed": t // 4},
                           "stages": [stages[t % stage_dirs]], "started_at": "2025-01-01T00:00:00+00:00",
                           "finished_at": "2025-01-01T00:10:00+00:00"}.items():
            trial.set_user_attr(key, value)
        study.tell(trial, 0.5)
    return results


STORE_QUERY = ("SELECT t.dpo__beta, m.metric, avg(m.value) AS mean, stddev_samp(m.value) / sqrt(count(*)) AS stderr, "
               "count(*) AS n FROM metrics m JOIN trials t USING (trial_id) WHERE t.status = 'complete' "
               "GROUP BY ALL ORDER BY mean DESC LIMIT 10")


def run_store(quick: bool) -> dict:
    from harness.store.ingest import ingest
    from harness.store.query import query

    trials, per_trial = (100, 100) if quick else (1000, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = synthetic_study(Path(tmp), trials, per_trial)
        built = time.perf_counter() - start
        start = time.perf_counter()
        counts = ingest(results, "bench")
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest(results, "bench")  # unchanged trials are skipped
        reingest_s = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            query(STORE_QUERY, results_dir=results, fmt="csv")
            times.append(time.perf_counter() - start)
    return {"metric_rows": counts["metrics"], "trials": counts["trials"], "build_seconds": built, "ingest_seconds": ingest_s,
            "reingest_unchanged_seconds": reingest_s, "reingest_unchanged_trials": again["unchanged"],
            "query_seconds": min(times), "query": STORE_QUERY}


def store_figures(r: dict) -> list[Figure]:
    rows = r["metric_rows"]
    return [Figure("store", f"DuckDB ingest of a study with {rows:,} metric rows ({r['trials']} trials)",
                   f"{r['ingest_seconds']:.1f}s ({rows / r['ingest_seconds']:,.0f} rows/s)", "< 60 s",
                   check(r["ingest_seconds"] < 60)),
            Figure("store", "re-ingest, nothing changed", f"{r['reingest_unchanged_seconds']:.1f}s", "< 10 s",
                   check(r["reingest_unchanged_seconds"] < 10)),
            Figure("store", "query: mean ± stderr per (β, metric) over all rows", f"{1000 * r['query_seconds']:.0f} ms",
                   "< 1 s", check(r["query_seconds"] < 1.0))]


# ---------------------------------------------------------------- eval throughput

def run_eval(quick: bool, threads: int = 2) -> dict:
    from harness.evals.suite import run_suite
    from harness.toylab.build import toy_base_model_dir

    limit = 40 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        rows = run_suite(toy_base_model_dir(), "toy", limit=limit, progress=False, threads=threads, out_dir=Path(tmp) / "eval")
        seconds = time.perf_counter() - start
    answers = next(r["n"] for r in rows if r["metric"] == "accuracy")
    return {"answers": answers, "seconds": seconds, "answers_per_s": answers / seconds, "threads": threads}


def eval_figures(r: dict) -> list[Figure]:
    return [Figure("eval", f"toy benchmark on the toy model ({r['answers']} answers, {r['threads']} threads, CPU: "
                   "generate + verify, model load included)", f"{r['answers_per_s']:.1f} answers/s")]


# ---------------------------------------------------------------- GPU

def run_gpu(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None}
    from harness.bench.gpu import gpu_figures

    return gpu_figures(quick)


def gpu_figures(r: dict) -> list[Figure]:
    if r.get("gpu") is None:
        names = ["SFT step MFU, ~100M Llama, SDPA", "SFT step MFU, ~100M Llama, flash-attn",
                 "DPO step MFU, ~100M Llama, SDPA", "DPO step MFU, ~100M Llama, flash-attn", "vllm generation tokens/s"]
        return [Figure("gpu", name, NO_GPU, "reported", "n/a") for name in names]
    return [Figure("gpu", f["name"], f["value"], f.get("target", "reported"), f.get("status", "—")) for f in r["figures"]]


# ---------------------------------------------------------------- the report

RUNNERS: dict[str, Callable] = {
    "packing": lambda args: BENCHMARKS["packing"](args),
    "dpo": lambda args: BENCHMARKS["dpo"](args),
    "search": lambda args: BENCHMARKS["search"](args),
    "runner": run_runner,
    "store": lambda args: run_store(getattr(args, "quick", False)),
    "eval": lambda args: run_eval(getattr(args, "quick", False)),
    "gpu": lambda args: run_gpu(getattr(args, "quick", False)),
}
FIGURES = {"packing": packing_figures, "dpo": dpo_figures, "search": search_figures, "runner": runner_figures,
           "store": store_figures,
           "eval": eval_figures, "gpu": gpu_figures}


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "gpus": gpus or "none", "python": platform.python_version(), "torch": torch.__version__,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run_all(args, sections=SECTIONS, report: Path = REPORT) -> dict:
    raw, figures = {}, []
    result = {"machine": machine(), "quick": bool(getattr(args, "quick", False)), "figures": [], "sections": raw,
              "report": str(report), "pending": list(sections)}
    for section in sections:
        start = time.perf_counter()
        try:
            raw[section] = RUNNERS[section](args)
            figures += FIGURES[section](raw[section])
        except Exception as err:  # one broken benchmark is a FAIL row, the others still run
            raw[section] = {"error": f"{type(err).__name__}: {err}"}
            figures.append(Figure(section, f"{section} benchmark", f"error: {type(err).__name__}: {err}"[:300],
                                  "runs", "FAIL"))
        raw.setdefault(section, {})["bench_seconds"] = time.perf_counter() - start
        result.update(figures=[asdict(f) for f in figures], pending=result["pending"][1:], machine=machine())
        write_report(result, report)  # after every section: a long run stopped midway still leaves its figures
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Performance report", "",
             f"Machine: {m['host']}: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, GPUs: "
             f"{', '.join(m['gpus']) if isinstance(m['gpus'], list) else m['gpus']}; Python {m['python']}, torch {m['torch']}; "
             f"load average at the end {', '.join(f'{x:.1f}' for x in m['load_average'] or [])}.",
             "Settings: " + ("--quick (small sizes: a smoke run, not the figures to quote)" if result["quick"] else "full"),
             "", "| section | figure | value | target | status |", "|---|---|---|---|---|"]
    for f in result["figures"]:
        cells = (str(f[k]).replace("|", "\\|").replace("\n", " ") for k in ("section", "name", "value", "target", "status"))
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("pending"):
        lines += ["", f"Still running or not run: {', '.join(result['pending'])}."]
    lines += ["", "Generated by `harness bench all`; raw numbers: `harness bench all --json`.", ""]
    return "\n".join(lines)


def write_report(result: dict, report: Path) -> None:
    from harness.runner.stagedir import atomic_write_text

    atomic_write_text(report, markdown(result))
    atomic_write_text(report.with_suffix(".json"), json.dumps(result, indent=1, default=str) + "\n")


@bench("all")
def bench_all(args) -> dict:
    result = run_all(args)
    print(markdown(result))
    return result
