"""`harness table SPEC.yaml | --preset NAME`: paper-style tables from the results store.

Rows are axis values, columns are benchmark metrics. A cell is the mean over the distinct
measurements in it (normally one per seed) ± the standard error of that mean; with a single
measurement, the benchmark's own standard error. Scores come from each trial's last eval stage
that has the metric (or from the eval stage `stage:` names). The best mean of each column is bold.
Output: Markdown, LaTeX (booktabs) or CSV, each with a provenance footer (study, trials, git sha).

Spec YAML (all keys but `columns` optional):

    study: lion_sft              # default: the latest study in the store
    title: SFT packing and loss masking
    rows: [sft.packing, sft.loss_mask]
    columns:
      - toy/accuracy             # BENCHMARK/METRIC or BENCHMARK.METRIC
      - {name: ARC, metric: openllm/arc_challenge/acc_norm, scale: 100}
    filter: {dpo.beta: 0.1}      # axis -> value or list of values
    average: true                # an Average column: the mean of the columns, per trial
    stage: eval:sft              # which eval stage's scores (default: each trial's last)
    format: md                   # md | latex | csv
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from harness.config.loader import ConfigError, load_config
from harness.config.schema import Strict
from harness.report import data
from harness.report.data import NoData

FORMATS = ("md", "latex", "csv")


class ColumnSpec(Strict):
    name: str
    metric: str  # BENCHMARK/METRIC or BENCHMARK.METRIC
    scale: float = 1.0  # e.g. 100 to show accuracies as percentages
    higher_is_better: bool = True


class TableSpec(Strict):
    study: str | None = None
    title: str | None = None
    rows: list[str] = Field(default_factory=list)
    columns: list[str | ColumnSpec] = Field(min_length=1)
    filter: dict[str, Any] = Field(default_factory=dict)
    average: bool = False
    average_name: str = "Average"
    average_first: bool = False  # sDPO puts H4 before its parts
    stage: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # axis -> row header
    decimals: int = Field(2, ge=0, le=6)
    format: Literal["md", "latex", "csv"] = "md"
    include_incomplete: bool = False  # also trials that failed or still run (their finished evals)
    notes: list[str] = Field(default_factory=list)

    def column_specs(self) -> list[ColumnSpec]:
        return [c if isinstance(c, ColumnSpec) else ColumnSpec(name=c, metric=c) for c in self.columns]


@dataclass
class Cell:
    mean: float | None
    stderr: float | None
    n: int
    bold: bool = False


@dataclass
class Table:
    title: str | None
    row_headers: list[str]
    columns: list[str]
    rows: list[tuple[list[str], list[Cell]]]
    footer: list[str]
    decimals: int = 2
    higher_is_better: list[bool] = field(default_factory=list)


# ---------------------------------------------------------------- measurements

def _matches(series: pd.Series, wanted: Any) -> pd.Series:
    values = wanted if isinstance(wanted, list) else [wanted]
    numeric = pd.to_numeric(series, errors="coerce")
    hit = pd.Series(False, index=series.index)
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            hit |= numeric == float(value)
        hit |= series.astype(str) == str(value)
    return hit


def _check_axes(spec: TableSpec, axes: list[str], study: str) -> None:
    for key, names in (("rows", spec.rows), ("filter", list(spec.filter))):
        for axis in names:
            if axis not in axes:
                raise ConfigError(f"{axis!r} is not an axis of study {study} (axes: {', '.join(axes) or 'none'})", key=key)


def measurements(con, spec: TableSpec, study: str) -> tuple[pd.DataFrame, list[str]]:
    """Long frame: one row per (trial, column) with value/stderr scaled and a measurement key
    (the eval stage key; for the average, the keys of its parts). Returns it and the study's axes."""
    columns = spec.column_specs()
    keys = [data.metric_key(c.metric) for c in columns]
    frame = data.scores(con, study, list(dict.fromkeys(keys)), spec.stage, not spec.include_incomplete)
    axes = data.axes_of(data.trials(con, study))
    _check_axes(spec, axes, study)
    for axis, wanted in spec.filter.items():
        frame = frame[_matches(frame[axis], wanted)]
    parts = []
    for column, key in zip(columns, keys):
        part = frame[(frame["benchmark"] == key[0]) & (frame["metric"] == key[1])].copy()
        part["column"], part["measure"] = column.name, part["stage_key"]
        part["value"], part["stderr"] = part["value"] * column.scale, part["stderr"] * column.scale
        parts.append(part)
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if spec.average and not long.empty:
        long = pd.concat([long, _average(long, [c.name for c in columns], spec.average_name)], ignore_index=True)
    return long, axes


def _average(long: pd.DataFrame, names: list[str], average_name: str) -> pd.DataFrame:
    """Per trial: the mean of its column values (only trials that have all of them)."""
    rows = []
    for _, group in long.groupby("trial_id", sort=False):
        if set(group["column"]) != set(names):
            continue
        first = group.iloc[0].to_dict()
        se = group["stderr"]
        rows.append({**first, "column": average_name, "value": group["value"].mean(),
                     "stderr": math.sqrt((se ** 2).sum()) / len(group) if se.notna().all() else float("nan"),
                     "measure": "|".join(sorted(group["measure"].astype(str)))})
    return pd.DataFrame(rows)


def _cell(values: pd.DataFrame) -> Cell:
    n = len(values)
    mean = float(values["value"].mean())
    if n >= 2:
        stderr = float(values["value"].std(ddof=1)) / math.sqrt(n)
    else:
        own = values["stderr"].iloc[0]
        stderr = None if pd.isna(own) else float(own)
    return Cell(mean, stderr, n)


# ---------------------------------------------------------------- the table

def build_table(con, spec: TableSpec, extra_notes: list[str] = ()) -> Table:
    study, notes = data.resolve_study(con, spec.study)
    long, axes = measurements(con, spec, study)
    if long.empty:
        raise NoData(f"study {study} has no finished scores for {', '.join(c.metric for c in spec.column_specs())}"
                     + (f" in stage {spec.stage}" if spec.stage else ""))
    names = [c.name for c in spec.column_specs()]
    if spec.average:
        names = [spec.average_name] + names if spec.average_first else names + [spec.average_name]
    better = {c.name: c.higher_is_better for c in spec.column_specs()} | {spec.average_name: True}
    rows = list(spec.rows)
    used_trials = list(long["trial_id"])
    long = long.drop_duplicates(["column", "measure"] + rows)
    key_cols = rows or ["_all"]
    if not rows:
        long["_all"] = "all"
    groups = {k if isinstance(k, tuple) else (k,): g for k, g in long.groupby(key_cols, dropna=False, sort=False)}
    ordered = sorted(groups, key=lambda k: [data.sort_key(v) for v in k])
    table_rows = []
    for key in ordered:
        by_column = dict(tuple(groups[key].groupby("column")))
        cells = [_cell(by_column[name]) if name in by_column else Cell(None, None, 0) for name in names]
        table_rows.append(([data.format_value(v) for v in key] if rows else ["all"], cells))
    _mark_best(table_rows, [better[n] for n in names], spec.decimals)
    footer = [data.provenance(con, study, used_trials)]
    footer += _method_notes(long, table_rows, axes, rows, spec) + list(spec.notes) + list(extra_notes) + notes
    headers = [spec.labels.get(r, data.short_axis(r)) for r in rows] or [""]
    return Table(spec.title, headers, names, table_rows, footer, spec.decimals, [better[n] for n in names])


def _mark_best(rows: list[tuple[list[str], list[Cell]]], higher: list[bool], decimals: int) -> None:
    for j, hib in enumerate(higher):
        means = [cells[j].mean for _, cells in rows if cells[j].mean is not None]
        if len(means) < 2:
            continue
        best = round(max(means) if hib else min(means), decimals)
        for _, cells in rows:
            if cells[j].mean is not None and round(cells[j].mean, decimals) == best:
                cells[j].bold = True


def _method_notes(long: pd.DataFrame, rows_out, axes: list[str], rows: list[str], spec: TableSpec) -> list[str]:
    counts = sorted({c.n for _, cells in rows_out for c in cells if c.n})
    n_text = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    has_seed = data.SEED_AXIS in axes and long[data.SEED_AXIS].nunique() > 1
    single = "; n = 1 shows the benchmark's own stderr" if 1 in counts else ""
    notes = [f"mean ± stderr over {'seeds' if has_seed else 'measurements'} (n = {n_text} per cell{single}); "
             f"best per column in bold; scores from {spec.stage or 'the last eval stage of each trial'} "
             f"({', '.join(sorted(long['stage'].unique()))})"]
    others = [a for a in axes if a not in rows and a != data.SEED_AXIS and a not in spec.filter]
    relevant = data.stage_axes(long, others)
    key_cols = rows or ["_all"]
    pooled = [a for a in relevant if (long.groupby(key_cols, dropna=False)[a].agg(lambda s: s.astype(str).nunique()) > 1).any()]
    if pooled:
        notes.append(f"cells pool trials that differ in {', '.join(pooled)}")
    return notes


# ---------------------------------------------------------------- rendering

def _number(cell: Cell, decimals: int, pm: str) -> str:
    if cell.mean is None:
        return "—"
    text = f"{cell.mean:.{decimals}f}"
    return text + (f"{pm}{cell.stderr:.{decimals}f}" if cell.stderr is not None and not math.isnan(cell.stderr) else "")


def render_md(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = _number(c, table.decimals, " ± ")
        return f"**{text}**" if c.bold else text

    lines = [f"**{table.title}**", ""] if table.title else []
    lines.append("| " + " | ".join(table.row_headers + table.columns) + " |")
    lines.append("|" + "---|" * len(table.row_headers) + "---:|" * len(table.columns))
    for labels, cells in table.rows:
        lines.append("| " + " | ".join([_md_escape(x) for x in labels] + [cell(c) for c in cells]) + " |")
    lines.append("")
    lines += [f"{_md_escape(line)}  " for line in table.footer]
    return "\n".join(lines).rstrip() + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "·": r"$\cdot$",
                 "–": "--", "—": "---", "’": "'", "γ": r"$\gamma$", "β": r"$\beta$"}


def latex_escape(text: str) -> str:
    text = str(text)
    out = [LATEX_SPECIAL.get(ch, ch) for ch in text]
    for i in range(len(text) - 1):
        if text[i] == text[i + 1] == "-":  # `--study` stays two hyphens, not an en dash
            out[i] = "-{}"
    return "".join(out)


def render_latex(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = _number(c, table.decimals, r" $\pm$ ")
        return rf"\textbf{{{text}}}" if c.bold else text

    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering"]
    if table.title:
        lines.append(rf"\caption{{{latex_escape(table.title)}}}")
    lines += [rf"\begin{{tabular}}{{{'l' * len(table.row_headers)}{'r' * len(table.columns)}}}", r"\toprule",
              " & ".join(latex_escape(h) for h in table.row_headers + table.columns) + r" \\", r"\midrule"]
    for labels, cells in table.rows:
        lines.append(" & ".join([latex_escape(x) for x in labels] + [cell(c) for c in cells]) + r" \\")
    footer = " \\\\ ".join(latex_escape(line) for line in table.footer)
    lines += [r"\bottomrule", r"\end{tabular}", "",
              r"\par\smallskip\parbox{\linewidth}{\footnotesize " + footer + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    header = table.row_headers + [x for name in table.columns for x in (name, f"{name} stderr", f"{name} n")]
    frame = pd.DataFrame([labels + [x for c in cells for x in (c.mean, c.stderr, c.n)] for labels, cells in table.rows],
                         columns=header)
    return frame.to_csv(index=False) + "".join(f"# {line}\n" for line in table.footer)


RENDERERS = {"md": render_md, "latex": render_latex, "csv": render_csv}


def render(table: Table, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown table format {fmt!r} (choose from {', '.join(FORMATS)})", key="format")
    return RENDERERS[fmt](table)


# ---------------------------------------------------------------- entry point

def make_table(spec_path: str | Path | None = None, preset: str | None = None, fmt: str | None = None,
               study: str | None = None, db_path=None, results_dir="results", parquet: bool = False) -> str:
    """The text of a table from a spec file or a preset, in `fmt` (default: the spec's format, else md)."""
    from harness.report.presets import preset_spec
    from harness.store.query import open_readonly

    if (spec_path is None) == (preset is None):
        raise ConfigError("give a table spec file or --preset NAME (one of them)")
    with open_readonly(db_path=db_path, results_dir=results_dir, parquet=parquet) as con:
        if preset is not None:
            spec, notes = preset_spec(con, preset, study)
        else:
            spec, notes = load_config(TableSpec, spec_path), []
            if study is not None:
                spec.study = study
        return render(build_table(con, spec, notes), fmt or spec.format)
