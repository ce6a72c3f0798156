"""Table and plot presets: registries filled by decorators, as lm-eval's task registry.

A table preset turns what a study has (its varying axes, its metrics, its eval stages) into a
TableSpec laid out as a paper's table; an axis or metric the study lacks is skipped with a note in
the footer, so a preset gives something sensible on any study, the toy demo included. Plot presets
(harness.report.plots) register a function `(con, study) -> Figure` the same way.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

from harness.config.loader import ConfigError
from harness.registry import registrar
from harness.report import data
from harness.report.data import NoData
from harness.report.tables import ColumnSpec, TableSpec

TABLE_PRESETS: dict[str, Callable[["StudyInfo"], tuple[TableSpec, list[str]]]] = {}
PLOT_PRESETS: dict[str, Callable] = {}


table_preset = registrar(TABLE_PRESETS)
plot_preset = registrar(PLOT_PRESETS)


def load_plot_presets() -> dict[str, Callable]:
    import harness.report.plots  # noqa: F401  (registers on import)
    import harness.report.effects_plot  # noqa: F401  (the `effects` forest plot)

    return PLOT_PRESETS


@dataclass
class StudyInfo:
    study: str
    axes: list[str]  # axes that vary in the study, seed excluded
    metrics: list[str]  # BENCHMARK/METRIC present in finished eval stages
    eval_stages: list[str]


def study_info(con, study: str) -> StudyInfo:
    trials = data.trials(con, study)
    return StudyInfo(study, data.varying_axes(trials, data.axes_of(trials)), data.metric_names(con, study),
                     data.eval_stage_names(con, study))


# ---------------------------------------------------------------- helpers that adapt to a study

def pick_axes(info: StudyInfo, patterns: list[str], notes: list[str], alternatives: bool = False) -> list[str]:
    """Varying axes matching the patterns, in pattern order. A pattern with no axis adds a note (with
    `alternatives`, only when no pattern matched). With none at all, every varying axis (noted)."""
    picked: list[str] = []
    for pattern in patterns:
        hits = [a for a in info.axes if fnmatch.fnmatch(a, pattern) and a not in picked]
        if not hits and not alternatives:
            notes.append(f"no axis {pattern} in study {info.study}: skipped")
        picked += hits
    if not picked and alternatives:
        notes.append(f"no axis {' or '.join(patterns)} in study {info.study}")
    if not picked and info.axes:
        notes.append(f"rows: every varying axis ({', '.join(info.axes)})")
        picked = list(info.axes)
    return picked


def pick_columns(info: StudyInfo, candidates: list[list[ColumnSpec]], notes: list[str]) -> list[ColumnSpec]:
    """For each candidate group, the first column whose metric the study has; a missing group adds a note."""
    columns = []
    for group in candidates:
        hit = next((c for c in group if _metric(c) in info.metrics), None)
        if hit is None:
            notes.append(f"no {group[0].name} scores ({group[0].metric}) in study {info.study}: column skipped")
        else:
            columns.append(hit)
    return columns


def _metric(column: ColumnSpec) -> str:
    return "/".join(data.metric_key(column.metric))


def col(name: str, metric: str, scale: float = 1.0) -> ColumnSpec:
    return ColumnSpec(name=name, metric=metric, scale=scale)


LION_COLUMNS = [
    [col("Arena-Hard", "arena-hard/score")],
    [col("AlpacaEval 2 LC", "alpaca-eval/length_controlled_winrate"), col("AlpacaEval 2", "alpaca-eval/win_rate")],
    [col("MT-Bench", "mt-bench/score")],
    [col("Open LLM", "openllm/average", 100)],
]
TOY_ACCURACY = col("Toy acc.", "toy/accuracy", 100)
H4_COLUMNS = [[col("ARC", "openllm/arc_challenge/acc_norm", 100)], [col("HellaSwag", "openllm/hellaswag/acc_norm", 100)],
              [col("MMLU", "openllm/mmlu/acc", 100)], [col("TruthfulQA", "openllm/truthfulqa_mc2/acc", 100)]]


def lion_columns(info: StudyInfo, notes: list[str]) -> list[ColumnSpec]:
    """LION's benchmark columns; on a study with none of them (the toy lab), toy accuracy."""
    quiet: list[str] = []
    columns = pick_columns(info, LION_COLUMNS, quiet)
    if columns:
        notes += quiet
        return columns
    if "toy/accuracy" in info.metrics:
        notes.append("none of LION's benchmarks in this study: toy accuracy instead")
        return [TOY_ACCURACY]
    raise NoData(f"study {info.study} has none of LION's benchmarks (arena-hard, alpaca-eval, mt-bench, openllm) "
                 "nor toy accuracy")


# ---------------------------------------------------------------- table presets

@table_preset("lion_sft_packing")
def lion_sft_packing(info: StudyInfo) -> tuple[TableSpec, list[str]]:
    """LION's SFT table: packing × loss mask, scores of the SFT model."""
    notes: list[str] = []
    rows = pick_axes(info, ["*packing*", "*loss_mask*"], notes)
    stage = "eval:sft" if "eval:sft" in info.eval_stages else None
    if stage is None:
        notes.append("no eval:sft stage: scores from each trial's last eval stage")
    spec = TableSpec(title="SFT: packing and loss masking", rows=rows, columns=lion_columns(info, notes), stage=stage,
                     labels={r: data.short_axis(r) for r in rows})
    return spec, notes


@table_preset("lion_dpo")
def lion_dpo(info: StudyInfo) -> tuple[TableSpec, list[str]]:
    """LION's DPO tables: one row per DPO setting (β, data, loss, method …)."""
    notes: list[str] = []
    rows = pick_axes(info, ["method", "dpo.*", "sdpo.*"], notes, alternatives=True)
    return TableSpec(title="Offline preference optimisation", rows=rows, columns=lion_columns(info, notes)), notes


@table_preset("lion_online_dpo")
def lion_online_dpo(info: StudyInfo) -> tuple[TableSpec, list[str]]:
    """LION's online DPO table: online sample count (and other online settings)."""
    notes: list[str] = []
    rows = pick_axes(info, ["online", "*online_samples*", "online_dpo.*"], notes, alternatives=True)
    return TableSpec(title="Online DPO", rows=rows, columns=lion_columns(info, notes)), notes


@table_preset("sdpo_table2")
def sdpo_table2(info: StudyInfo) -> tuple[TableSpec, list[str]]:
    """sDPO's Table 2: H4 (the mean of ARC, HellaSwag, MMLU, TruthfulQA) and its four parts per method."""
    notes: list[str] = []
    rows = pick_axes(info, ["method", "sdpo.*"], notes, alternatives=True)
    columns = pick_columns(info, H4_COLUMNS, notes)
    if not columns:
        raise NoData(f"study {info.study} has none of the H4 metrics (openllm arc_challenge, hellaswag, mmlu, truthfulqa_mc2)")
    average = len(columns) == len(H4_COLUMNS)
    if not average:
        notes.append("H4 average left out: not all four benchmarks were evaluated")
    return TableSpec(title="sDPO Table 2 layout: H4 and its benchmarks", rows=rows, columns=columns, average=average,
                     average_name="H4", average_first=True), notes


@table_preset("toy_demo")
def toy_demo(info: StudyInfo) -> tuple[TableSpec, list[str]]:
    """The toy lab: accuracy overall and per task, and the toy-question judged benchmarks."""
    notes: list[str] = []
    rows = pick_axes(info, ["*"], notes)
    tasks = sorted(m for m in info.metrics if m.startswith("toy/accuracy_"))
    columns = [col("Toy acc.", "toy/accuracy", 100)] if "toy/accuracy" in info.metrics else []
    columns += [col(m.split("accuracy_", 1)[1], m, 100) for m in tasks]
    columns += pick_columns(info, LION_COLUMNS[:3], [])
    if not columns:
        raise NoData(f"study {info.study} has no toy accuracy nor judged benchmark scores")
    return TableSpec(title="Toy lab", rows=rows, columns=columns), notes


# ---------------------------------------------------------------- entry

def preset_spec(con, name: str, study: str | None = None) -> tuple[TableSpec, list[str]]:
    """The preset's spec for `study` (default: the latest study the preset can use) and its notes."""
    if name not in TABLE_PRESETS:
        raise ConfigError(f"unknown table preset {name!r} (known: {', '.join(sorted(TABLE_PRESETS))})", key="--preset")
    builder = TABLE_PRESETS[name]

    def fit(candidate: str) -> int | None:
        """How well the preset fits a study: fewer skipped axes and columns is better; None if unusable."""
        try:
            return -len(builder(study_info(con, candidate))[1])
        except NoData:
            return None

    try:
        chosen, notes = data.resolve_study(con, study, fit)
    except NoData:
        names = data.studies(con)
        if names:  # say why for the latest study
            builder(study_info(con, names[0]))
        raise
    spec, preset_notes = builder(study_info(con, chosen))
    spec.study = chosen
    return spec, preset_notes + notes
