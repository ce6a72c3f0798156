"""The `harness` command. Thin: one function per subcommand, the work lives in the modules it calls.

Every input error (ConfigError) prints one line `harness: error: FILE:LINE: KEY: reason` and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.config.loader import ConfigError


def cmd_train(args) -> int:
    from harness.runner.stages import train_stage

    out, manifest = train_stage(args.kind.replace("-", "_"), args.config, args.overrides, args.out)
    print(f"{args.kind}: {out} ({manifest.get('steps')} steps, {manifest.get('seconds', 0):.1f}s, "
          f"final loss {manifest.get('final_loss')})")
    return 0


def cmd_bench(args) -> int:
    from harness.bench import BENCHMARKS, load_benchmarks

    load_benchmarks()
    result = BENCHMARKS[args.name](args)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_eval(args) -> int:
    from harness.evals.suite import run_suite

    generation = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    rows = run_suite(args.model_dir, args.suite, judge=args.judge, limit=args.limit, data_dir=args.data_dir,
                     toy_questions=True if args.toy_questions else None, generation=generation,
                     progress=not args.no_progress, threads=args.threads, out_dir=args.out)
    for row in rows:
        value = "n/a" if row["value"] is None else f"{row['value']:.4g}"
        stderr = "" if row["stderr"] is None else f" ± {row['stderr']:.2g}"
        print(f"{row['benchmark']:<12} {row['metric']:<28} {value}{stderr}  (n={row['n']}, failures={row['failures']})")
    if args.json:
        print(json.dumps({"model_dir": args.model_dir, "metrics": rows}))
    return 0


def cmd_score(args) -> int:
    from harness.evals.scorers import run_scorer

    text, result = run_scorer(args)
    print(text)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_plan(args) -> int:
    from harness.grid.expand import describe, load_plan

    plan = load_plan(args.grid, args.overrides)
    print(describe(plan))
    return 0


def cmd_run(args) -> int:
    from harness.grid.expand import load_plan
    from harness.runner.study import run_grid

    plan = load_plan(args.grid, args.overrides)
    summary = run_grid(plan, args.overrides, workers=args.workers, storage_url=args.storage, rerun=args.rerun,
                       launcher=args.launcher)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary.get("ok", summary["states"].get("complete", 0) == summary["points"]) else 1


def cmd_worker(args) -> int:
    from harness.grid.expand import load_plan
    from harness.runner.runner import Layout, open_storage, work
    from harness.runner.study import launch_settings
    from pathlib import Path

    plan = load_plan(args.grid, args.overrides)
    layout = Layout(Path(plan.grid.results_dir))
    settings = launch_settings(plan, args.workers or plan.grid.execution.workers, worker_index=args.index)
    work(plan, layout, open_storage(args.storage, layout, plan.study), settings, plan.grid.execution.retries,
         args.rerun, echo=lambda m: print(f"[worker {args.index}] {m}", flush=True))
    return 0


def cmd_status(args) -> int:
    from harness.grid.expand import load_plan
    from harness.runner.study import status_lines

    print("\n".join(status_lines(load_plan(args.grid, args.overrides), args.storage)))
    return 0


def cmd_ingest(args) -> int:
    from harness.store.ingest import ingest_all

    counts = ingest_all(args.results, args.studies, storage_url=args.storage, db_path=args.db, force=args.force)
    for study, c in counts.items():
        print(f"{study}: {c['trials']} trials, {c['stages']} stages, {c['metrics']} metric rows, {c['train_curves']} "
              f"curve points, {c['manifests']} manifests ({c['ingested']} trials loaded, {c['unchanged']} unchanged)")
    if args.json:
        print(json.dumps(counts))
    return 0


def cmd_query(args) -> int:
    from harness.store.query import query

    print(query(args.sql, db_path=args.db, fmt=args.format, parquet_dir=args.parquet_dir, results_dir=args.results,
                parquet=args.parquet))
    return 0


def cmd_table(args) -> int:
    from harness.report.tables import make_table
    from harness.runner.stagedir import atomic_write_text

    text = make_table(args.spec, args.preset, args.format, args.study, args.db, args.results, args.parquet)
    if args.out:
        atomic_write_text(args.out, text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def cmd_plot(args) -> int:
    from harness.report.plots import make_plot

    paths = make_plot(args.preset, args.study, args.db, args.results, args.out_dir, args.parquet,
                      note=lambda message: print(f"harness: note: {message}", file=sys.stderr))
    if not paths:
        raise ConfigError("no plot preset found data to draw in the results store", key="--preset")
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_effects(args) -> int:
    from harness.report.effects_report import make_effects
    from harness.runner.stagedir import atomic_write_text

    text = make_effects(args.grid, args.study, args.benchmark, args.format, [tuple(p) for p in args.interaction],
                        args.stage, args.db, args.results, args.parquet, not args.no_importance, args.n_boot, args.seed,
                        metrics=args.metric or None)
    if args.out:
        atomic_write_text(args.out, text)
        print(args.out)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="SFT -> DPO/sDPO -> online-DPO ablation harness")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one stage from a YAML config")
    train.add_argument("kind", choices=["sft", "dpo", "sdpo", "online-dpo"])
    train.add_argument("config", help="stage config YAML")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-4 data.0.size=500")
    train.add_argument("--out", help="stage directory (default: output_dir in the config, else results/runs/KIND-HASH)")
    train.set_defaults(func=cmd_train)

    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("name", choices=["packing", "dpo", "runner", "search", "all"])
    bench.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    bench.add_argument("--quick", action="store_true", help="smaller sizes (for smoke tests)")
    bench.set_defaults(func=cmd_bench)

    plan = sub.add_parser("plan", help="expand and validate a grid; print its stage graph")
    plan.add_argument("grid", help="ablation grid YAML")
    plan.add_argument("overrides", nargs="*", help="key=value overrides of the grid file")
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("run", help="train and evaluate every grid point (resumable)")
    run.add_argument("grid")
    run.add_argument("overrides", nargs="*")
    run.add_argument("--workers", type=int, help="parallel workers on this machine (default: execution.workers)")
    run.add_argument("--storage", help="Optuna storage: a journal file path or an RDB URL (postgresql://...)")
    run.add_argument("--rerun", action="append", default=[], metavar="STAGE_KIND", help="retrain stages of this kind")
    run.add_argument("--launcher", choices=["local", "slurm"], help="where stages run (default: execution.launcher)")
    run.add_argument("--json", action="store_true", help="last stdout line is a JSON summary")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("grid")
    worker.add_argument("overrides", nargs="*")
    worker.add_argument("--index", type=int, default=0)
    worker.add_argument("--workers", type=int)
    worker.add_argument("--storage")
    worker.add_argument("--rerun", action="append", default=[])
    worker.set_defaults(func=cmd_worker)

    status = sub.add_parser("status", help="each trial's state and stages")
    status.add_argument("grid")
    status.add_argument("overrides", nargs="*")
    status.add_argument("--storage")
    status.set_defaults(func=cmd_status)

    score = sub.add_parser("score", help="score judge outputs given in a benchmark's official format")
    which = score.add_subparsers(dest="benchmark", required=True)
    alpaca = which.add_parser("alpaca-eval", help="win rate, SE and LC win rate of an annotations file")
    alpaca.add_argument("path", metavar="ANNOTATIONS.json")
    alpaca.add_argument("--lc-data", help="alpaca_eval's df_gamed.csv, or a folder with it (default: "
                        "$HARNESS_ALPACA_LC_DATA, else ../shared/data/alpaca_eval/lc/df_gamed_reconstructed.csv)")
    arena = which.add_parser("arena-hard", help="Arena-Hard v0.1 leaderboard with 95%% CIs")
    arena.add_argument("path", metavar="BENCH_DIR", help="holds model_answer/ and model_judgment/JUDGE/")
    arena.add_argument("--judge-model", required=True)
    arena.add_argument("--baseline", default="gpt-4-0314")
    arena.add_argument("--num-rounds", type=int, default=100, help="bootstrap rounds")
    mt = which.add_parser("mt-bench", help="per-model turn-1, turn-2 and overall means")
    mt.add_argument("path", metavar="JUDGMENT.jsonl")
    for scorer in (alpaca, arena, mt):
        scorer.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    score.set_defaults(func=cmd_score)
    evaluate = sub.add_parser("eval", help="generate, judge and score benchmarks for one model (MODEL_DIR/eval/)")
    evaluate.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory or a stage directory holding model/")
    evaluate.add_argument("--suite", default="toy", help="comma-separated: openllm,alpaca-eval,arena-hard,mt-bench,toy")
    evaluate.add_argument("--judge", help="JUDGE.yaml, or a judge name (verifier, openai, ...); default: openai")
    evaluate.add_argument("--limit", type=int, help="at most N prompts/questions per benchmark")
    evaluate.add_argument("--data-dir", help="local benchmark data (default: $HARNESS_SHARED_DATA or ../shared/data)")
    evaluate.add_argument("--toy-questions", action="store_true",
                          help="toy question sets for alpaca-eval/arena-hard/mt-bench (implied by --judge verifier)")
    evaluate.add_argument("--max-new-tokens", type=int, help="answer length cap (default: 1024; 32 on toy questions)")
    evaluate.add_argument("--out", help="output directory (default: MODEL_DIR/eval)")
    evaluate.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.add_argument("--json", action="store_true", help="last stdout line is one JSON object with the metrics")
    evaluate.set_defaults(func=cmd_eval)
    add_store_commands(sub)
    add_effects_command(sub)
    return parser


def add_store_commands(sub) -> None:
    """ingest, query, table, plot: the results store and what is made from it."""
    def store_options(p, parquet_help="read the Parquet snapshot instead of the DuckDB file"):
        p.add_argument("--results", default="results", help="results directory (default: results)")
        p.add_argument("--db", help="DuckDB file (default: RESULTS/harness.duckdb)")
        p.add_argument("--parquet", action="store_true", help=parquet_help)

    ingest = sub.add_parser("ingest", help="load studies' trials and finished stages into RESULTS/harness.duckdb")
    ingest.add_argument("studies", nargs="*", metavar="STUDY", help="study names (default: every RESULTS/*/optuna.journal)")
    ingest.add_argument("--results", default="results", help="results directory (default: results)")
    ingest.add_argument("--db", help="DuckDB file (default: RESULTS/harness.duckdb)")
    ingest.add_argument("--storage", help="Optuna storage: a journal file or an RDB URL (default: RESULTS/STUDY/optuna.journal)")
    ingest.add_argument("--force", action="store_true", help="reload trials even when unchanged")
    ingest.add_argument("--json", action="store_true", help="last stdout line is one JSON object with the counts")
    ingest.set_defaults(func=cmd_ingest)

    query = sub.add_parser("query", help="read-only SQL over the results store")
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    store_options(query, "query the Parquet snapshot (automatic when another process holds the DuckDB file)")
    query.add_argument("--parquet-dir", help="Parquet snapshot folder (default: next to the DuckDB file, parquet/)")
    query.set_defaults(func=cmd_query)

    table = sub.add_parser("table", help="a paper-style table from a spec YAML or a preset")
    table.add_argument("spec", nargs="?", metavar="SPEC.yaml")
    table.add_argument("--preset", help="lion_sft_packing, lion_dpo, lion_online_dpo, sdpo_table2, toy_demo")
    table.add_argument("--format", choices=["md", "latex", "csv"], help="default: the spec's format, else md")
    table.add_argument("--study", help="study to report (default: the spec's, else the best-fitting latest one)")
    table.add_argument("--out", help="write the table to this file instead of stdout")
    store_options(table)
    table.set_defaults(func=cmd_table)

    plot = sub.add_parser("plot", help="figures as PNG and PDF in RESULTS/plots/")
    plot.add_argument("--preset", required=True, help="scaling_data_size, scaling_steps, online_samples, dpo_margin, "
                      "sdpo_gamma, loss_curves, or all")
    plot.add_argument("--study", help="study to plot (default: the latest one with the data)")
    plot.add_argument("--out-dir", help="default: RESULTS/plots")
    store_options(plot)
    plot.set_defaults(func=cmd_plot)


def add_effects_command(sub) -> None:
    effects = sub.add_parser("effects", help="which choices matter: paired effects with CIs, noise, cost, importance")
    effects.add_argument("grid", nargs="?", metavar="GRID.yaml", help="the grid file (its study, results dir, levels)")
    effects.add_argument("--study", help="study name (default: the grid's, else the latest)")
    effects.add_argument("--benchmark", help="only this benchmark's metrics")
    effects.add_argument("--metric", action="append", metavar="BENCHMARK/METRIC", help="only these metrics (repeatable)")
    effects.add_argument("--format", choices=["md", "latex", "csv", "json"], default="md")
    effects.add_argument("--interaction", nargs=2, action="append", default=[], metavar=("AXIS_A", "AXIS_B"),
                         help="cell means with CIs and interaction contrasts of two axes (repeatable)")
    effects.add_argument("--stage", help="eval stage whose scores to use, e.g. eval:sft (default: each trial's last)")
    effects.add_argument("--results", help="results directory (default: the grid's results_dir, else results)")
    effects.add_argument("--db", help="DuckDB file (default: RESULTS/harness.duckdb)")
    effects.add_argument("--parquet", action="store_true", help="read the Parquet snapshot instead of the DuckDB file")
    effects.add_argument("--no-importance", action="store_true", help="skip Optuna's importance evaluators")
    effects.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    effects.add_argument("--seed", type=int, default=0, help="bootstrap and fANOVA seed")
    effects.add_argument("--out", help="write the report to this file instead of stdout")
    effects.set_defaults(func=cmd_effects)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may also follow options
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
