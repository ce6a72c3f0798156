"""`harness effects`: the effects report of a study (main effects, costs, interactions, importance),
loaded read-only from the results store and rendered as md, latex, csv or json.

csv is one long table with a `section` column (effect | cost | interaction | contrast | importance);
json is one object {study, notes, cost, effects, level_costs, interactions, contrasts, importance}.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config.loader import ConfigError
from harness.report import data
from harness.report.costs import study_cost
from harness.report.effects import (N_BOOT, SEED_AXIS, Results, effect_axes, is_continuous, labels,
                                    level_costs, main_effects, mask_unused_axes, metrics_of, reference_level,
                                    same_trials)
from harness.report.interactions import interaction
from harness.report.tables import _md_escape, latex_escape

FORMATS = ("md", "latex", "csv", "json")
RULE = ("within noise: the 95% CI over pairs (bootstrap from 10 pairs, Student t below) covers 0, or "
        "|Δ| ≤ 2·max(bench SE, √2·seed SD/√pairs) (bench SE: the benchmarks' own standard error of a paired "
        "difference, which more pairs on the same questions do not shrink; seed SD: spread across seeds)")


@dataclass
class EffectsReport:
    study: str
    effects: pd.DataFrame
    level_costs: pd.DataFrame
    cost: dict[str, Any]
    interactions: pd.DataFrame = field(default_factory=pd.DataFrame)
    contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- loading

def grid_levels(grid) -> tuple[dict[str, list], dict[str, Any]]:
    """Each axis's levels in the grid file's order, and the reference levels it names."""
    levels: dict[str, list] = {}
    blocks = [grid.grid, *grid.zip, *(c.grid for c in grid.conditional)]
    if grid.search is not None:
        blocks.append({a: v for a, v in grid.search.space.items() if isinstance(v, list)})
    for block in blocks:
        for axis, values in block.items():
            levels.setdefault(axis, [])
            levels[axis] += [v for v in values if v not in levels[axis]]
    levels[SEED_AXIS] = list(grid.seeds)
    return levels, dict(grid.effects.reference)


def load_grid(path: str | Path):
    from harness.config.grid import GridConfig
    from harness.config.loader import read_yaml, validate

    raw, lines = read_yaml(path)
    grid = validate(GridConfig, raw, file=str(path), lines=lines)
    return grid, grid.study or Path(path).stem


def load_results(con, study: str, grid=None, stage: str | None = None) -> Results:
    """A study's trials (every status), scores (from each trial's last eval stage, or `stage`) and stage costs."""
    trials = data.trials(con, study)
    axes = [c for c in trials.columns if c not in data.TRIAL_COLUMNS]
    metrics = [data.metric_key(m) for m in data.metric_names(con, study)]
    scores = data.scores(con, study, metrics, stage=stage, complete_only=False)
    scores = scores[["trial_id", "benchmark", "metric", "value", "stderr"]] if not scores.empty else \
        pd.DataFrame(columns=["trial_id", "benchmark", "metric", "value", "stderr"])
    stages = con.execute("""
        SELECT s.trial_id, s.stage_key, s.kind, s.name, s.seconds,
               coalesce(try_cast(json_extract(m.manifest_json, '$.gpus') AS DOUBLE), 0) AS gpus,
               try_cast(m.seconds AS DOUBLE) AS manifest_seconds
        FROM stages s JOIN trials t USING (trial_id) LEFT JOIN manifests m USING (stage_key)
        WHERE t.study = ?""", [study]).df()
    levels, reference = grid_levels(grid) if grid is not None else ({}, {})
    ranges = {a for a, s in grid.search.space.items() if not isinstance(s, list)} if grid is not None and grid.search else set()
    trials = mask_unused_axes(trials, stages, axes)
    objective = (grid.search.objective if grid.search else grid.objective) if grid is not None else None
    return Results(study, trials, scores, _fill_reused(stages), axes, levels, reference, continuous=ranges,
                   objective=objective)


def _fill_reused(stages: pd.DataFrame) -> pd.DataFrame:
    """A stage trained outside this study records ~0 s in every trial here: take its manifest's seconds."""
    if stages.empty:
        return stages
    best = stages.groupby("stage_key")["seconds"].transform("max").fillna(0)
    use_manifest = (best <= 0) & stages["manifest_seconds"].notna()
    return stages.assign(seconds=stages["seconds"].where(~use_manifest, stages["manifest_seconds"]))


# ---------------------------------------------------------------- building

def build_report(results: Results, benchmark: str | None = None, metrics: list[tuple[str, str]] | None = None,
                 interactions: list[tuple[str, str]] = (), importance: bool = True, n_boot: int = N_BOOT,
                 seed: int = 0) -> EffectsReport:
    if metrics is None:
        metrics = metrics_of(results, benchmark)
    if not metrics:
        where = f" of benchmark {benchmark!r}" if benchmark else ""
        raise data.NoData(f"study {results.study} has no scores{where} (benchmarks: "
                          f"{', '.join(sorted(set(results.scores['benchmark']))) or 'none'})")
    notes = list(results.notes) + [RULE]
    axes = effect_axes(results)
    for axis in axes:
        if is_continuous(results, axis):
            notes.append(f"{axis}: continuous (searched) axis, no levels to pair: see its importance")
        else:
            notes.append(f"{axis}: reference level {labels(results, axis)[reference_level(results, axis)]}")
    discrete = [a for a in axes if not is_continuous(results, a)]
    report = EffectsReport(results.study, main_effects(results, metrics, n_boot, seed), level_costs(results, discrete),
                           study_cost(results), notes=notes)
    _pairing_notes(report)
    _same_trials_notes(report, results)
    _chance_note(report)
    cells, contrasts = [], []
    for a, b in interactions:
        for axis in (a, b):
            if axis not in results.axes:
                raise ConfigError(f"{axis!r} is not an axis of study {results.study} (axes: {', '.join(results.axes)})",
                                  key="--interaction")
        for bench, metric in metrics:
            c, k = interaction(results, a, b, bench, metric, n_boot, seed)
            cells.append(c), contrasts.append(k)
    report.interactions = pd.concat(cells, ignore_index=True) if cells else pd.DataFrame()
    report.contrasts = pd.concat(contrasts, ignore_index=True) if contrasts else pd.DataFrame()
    if importance:
        from harness.report.importance import axis_importance

        report.importance = axis_importance(results, metrics, seed=seed)
    return report


def _pairing_notes(report: EffectsReport) -> None:
    frame = report.effects
    if frame.empty:
        return
    for column, what in (("aliased", "aliased with (not paired on)"), ("nested", "nested axes averaged within pairs")):
        for (axis, value), _ in frame[frame[column] != ""].groupby(["axis", column]):
            report.notes.append(f"{axis}: {what} {value}")


def _same_trials_notes(report: EffectsReport, results: Results) -> None:
    shown = {axis: labels(results, axis) for axis in results.axes}
    for (axis, level), (first, first_level) in same_trials(results).items():
        report.notes.append(f"{axis}={shown[axis][level]}: the same trials as {first}={shown[first][first_level]} "
                            f"(zipped), reported there")


def _chance_note(report: EffectsReport) -> None:
    """How many flags chance alone would give: a 2-SE rule flags ~5% of comparisons with no real effect."""
    frame = report.effects
    if frame.empty:
        return
    judged = frame[frame["verdict"].isin(["effect", "within noise"])]
    if len(judged):
        flagged = int((judged["verdict"] == "effect").sum())
        report.notes.append(f"{flagged} of {len(judged)} comparisons are beyond noise; if no choice mattered, at most "
                            f"about {0.05 * len(judged):.1f} would be (the bar is at least 2 SE of each mean difference)")


# ---------------------------------------------------------------- rendering

def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    x = 0.0 if round(x, digits) == 0 else x  # no "-0.000"
    return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.3g}"


def _ci(low: float, high: float) -> str:
    return "—" if math.isnan(low) else f"[{_num(low)}, {_num(high)}]"


def effect_rows(report: EffectsReport) -> tuple[list[str], dict[str, list[list[str]]]]:
    unit = report.cost.get("unit", "CPU-s")
    header = ["axis", "level vs ref", "Δ mean", "95% CI", "pairs", "excluded (failed)", "bench SE", "seed SD",
              "verdict", f"{unit}/trial ref → level"]
    by_metric: dict[str, list[list[str]]] = {}
    for r in report.effects.itertuples():
        by_metric.setdefault(f"{r.benchmark}/{r.metric}", []).append([
            r.axis, f"{data.format_value(r.level)} vs {data.format_value(r.reference)}", _num(r.mean_diff),
            _ci(r.ci_low, r.ci_high), str(r.n_pairs), f"{r.excluded} ({r.excluded_failed})", _num(r.bench_se),
            _num(r.seed_sd), r.verdict, f"{_num(r.cost_ref, 1)} → {_num(r.cost_level, 1)}"])
    return header, by_metric


def cost_rows(report: EffectsReport) -> tuple[list[str], list[list[str]]]:
    unit = report.cost.get("unit", "CPU-s")
    header = ["axis", "level", "trials", f"{unit}/trial", f"spent ({unit})", f"saved by shared stages ({unit})"]
    rows = [[r.axis, data.format_value(r.level), str(r.trials), _num(r.per_trial, 1), _num(r.spent, 1), _num(r.saved, 1)]
            for r in report.level_costs.itertuples()]
    return header, rows


def cost_line(report: EffectsReport) -> str:
    c = report.cost
    share = f" ({100 * c['saved'] / c['full']:.0f}%)" if c.get("full") else ""
    return (f"cost: {c['trials']} trials, {_num(c['full'], 1)} {c['unit']} of stages as if unshared, "
            f"{_num(c['spent'], 1)} spent; dedup of shared stages saved {_num(c['saved'], 1)} {c['unit']}{share}")


def interaction_tables(report: EffectsReport) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    if report.interactions.empty:
        return out
    for (bench, metric, a, b), cells in report.interactions.groupby(["benchmark", "metric", "axis_a", "axis_b"], sort=False):
        cols = list(dict.fromkeys(cells["level_b"]))
        rows = []
        for level_a, row in cells.groupby("level_a", sort=False):
            by_b = {r.level_b: f"{_num(r.mean)} {_ci(r.ci_low, r.ci_high)} n={r.n}" for r in row.itertuples()}
            rows.append([data.format_value(level_a)] + [by_b.get(c, "—") for c in cols])
        title = f"{bench}/{metric}: {a} × {b} (cell means, 95% bootstrap CI)"
        out.append((title, [f"{data.short_axis(a)} \\ {data.short_axis(b)}"] + [data.format_value(c) for c in cols], rows))
        contrasts = report.contrasts[(report.contrasts["benchmark"] == bench) & (report.contrasts["metric"] == metric)
                                     & (report.contrasts["axis_a"] == a) & (report.contrasts["axis_b"] == b)]
        if len(contrasts):
            out.append((f"{bench}/{metric}: interaction contrasts (difference of differences, paired)",
                        ["a level vs ref", "b level vs ref", "contrast", "95% CI", "groups"],
                        [[f"{data.format_value(r.level_a)} vs {data.format_value(r.ref_a)}",
                          f"{data.format_value(r.level_b)} vs {data.format_value(r.ref_b)}", _num(r.contrast),
                          _ci(r.ci_low, r.ci_high), str(r.n_groups)] for r in contrasts.itertuples()]))
    return out


def importance_tables(report: EffectsReport) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    if report.importance.empty:
        return out
    for (bench, metric), frame in report.importance.groupby(["benchmark", "metric"], sort=False):
        warned = sorted({str(n) for n in frame["note"].dropna() if n != "noise reference"})
        title = f"{bench}/{metric}: axis importance (n={frame['n_trials'].iloc[0]} trials)" + \
            "".join(f"; note: {w}" for w in warned)
        if frame["axis"].isna().all():
            out.append((title, ["note"], [[str(n)] for n in frame["note"].dropna().unique()]))
            continue
        names = list(dict.fromkeys(frame["evaluator"].dropna()))
        table = frame.dropna(subset=["axis"]).pivot_table(index="axis", columns="evaluator", values="importance", sort=False)
        rows = [[axis + (" (noise reference)" if axis == SEED_AXIS else "")]
                + [_num(table.loc[axis].get(n, math.nan)) for n in names] for axis in table.index]
        out.append((title, ["axis"] + [f"{n} importance" for n in names], rows))
    return out


def sections(report: EffectsReport) -> list[tuple[str, list[str], list[list[str]]]]:
    header, by_metric = effect_rows(report)
    out = [(f"Main effects on {metric} (study {report.study})", header, rows) for metric, rows in by_metric.items()]
    if not report.level_costs.empty:
        out.append((f"Cost per axis level (study {report.study})", *cost_rows(report)))
    return out + interaction_tables(report) + importance_tables(report)


def render_md(report: EffectsReport) -> str:
    lines = []
    for title, header, rows in sections(report):
        lines += [f"**{_md_escape(title)}**", "", "| " + " | ".join(map(_md_escape, header)) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows] + [""]
    lines.append(cost_line(report) + "  ")
    lines += [f"{_md_escape(n)}  " for n in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def render_latex(report: EffectsReport) -> str:
    """Tables for a paper (\\usepackage{booktabs}); notes as a footnotesize paragraph."""
    out = [r"% requires \usepackage{booktabs}"]
    for title, header, rows in sections(report):
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(title)}}}", r"\resizebox{\linewidth}{!}{%",
                rf"\begin{{tabular}}{{{'l' * len(header)}}}", r"\toprule", " & ".join(_tex(h) for h in header) + r" \\",
                r"\midrule"]
        out += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
        out += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    out.append(r"\par{\footnotesize " + r" \\ ".join(_tex(n) for n in [cost_line(report), *report.notes]) + "}")
    return "\n".join(out) + "\n"


TEX_EXTRA = {"Δ": r"$\Delta$", "≤": r"$\leq$", "→": r"$\rightarrow$", "×": r"$\times$", "√": r"$\surd$", "∅": r"$\emptyset$",
             "|": r"$|$", "<": r"$<$", ">": r"$>$"}


def _tex(text: str) -> str:
    escaped = latex_escape(text)
    return "".join(TEX_EXTRA.get(ch, ch) for ch in escaped)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records")) if not frame.empty else []


def render_json(report: EffectsReport) -> str:
    return json.dumps({"study": report.study, "notes": report.notes, "cost": report.cost,
                       "effects": _records(report.effects), "level_costs": _records(report.level_costs),
                       "interactions": _records(report.interactions), "contrasts": _records(report.contrasts),
                       "importance": _records(report.importance)})


def render_csv(report: EffectsReport) -> str:
    parts = [frame.assign(section=name) for name, frame in (
        ("effect", report.effects), ("cost", report.level_costs), ("interaction", report.interactions),
        ("contrast", report.contrasts), ("importance", report.importance)) if not frame.empty]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["section"])
    return frame[["section"] + [c for c in frame.columns if c != "section"]].to_csv(index=False)


RENDERERS = {"md": render_md, "latex": render_latex, "csv": render_csv, "json": render_json}


def render(report: EffectsReport, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", key="--format")
    return RENDERERS[fmt](report)


# ---------------------------------------------------------------- entry point

def make_effects(grid_path: str | None = None, study: str | None = None, benchmark: str | None = None,
                 fmt: str = "md", interactions: list[tuple[str, str]] = (), stage: str | None = None,
                 db_path=None, results_dir: str | None = None, parquet: bool = False, importance: bool = True,
                 n_boot: int = N_BOOT, seed: int = 0, metrics: list[str] | None = None) -> str:
    """The effects report of a grid's study (or `study`) as text in `fmt`; `metrics`: BENCHMARK/METRIC names."""
    from harness.store.query import open_readonly

    if fmt not in RENDERERS:
        raise ConfigError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", key="--format")
    grid = None
    if grid_path is not None:
        grid, grid_study = load_grid(grid_path)
        study = study or grid_study
        results_dir = results_dir or grid.results_dir
    with open_readonly(db_path=db_path, results_dir=results_dir or "results", parquet=parquet) as con:
        study, notes = data.resolve_study(con, study)
        results = load_results(con, study, grid, stage)
        results.notes += notes + [data.provenance(con, study, list(results.trials["trial_id"]))]
    wanted = [data.metric_key(m) for m in metrics] if metrics else None
    report = build_report(results, benchmark, wanted, interactions, importance, n_boot, seed)
    return render(report, fmt)
