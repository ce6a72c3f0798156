"""`harness plot --preset NAME`: figures from the results store, as PNG and PDF in results/plots/.

Presets (registered with `@plot_preset`):
  scaling_data_size  score vs dataset size, one panel per size axis, polynomial fit (LION's scaling figures)
  scaling_steps      score vs training steps (a steps axis, else the trial's optimizer steps from manifests)
  online_samples     score vs the online DPO sample count
  dpo_margin         probability margin (and log-prob margin change, reward margin) over preference training
  sdpo_gamma         mean γ_ref per sDPO step (sDPO's figure)
  loss_curves        training loss per stage, one line per setting
Lines are settings (the non-seed axes that vary); seeds are averaged, with ± stderr bars or bands.
Each figure carries a provenance line (study, trials, git sha).
"""
from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from harness.config.loader import ConfigError
from harness.report import data
from harness.report.data import NoData
from harness.report.presets import PLOT_PRESETS, load_plot_presets, plot_preset

HEADLINE_METRICS = ["toy/accuracy", "openllm/average", "arena-hard/score", "alpaca-eval/length_controlled_winrate",
                    "alpaca-eval/win_rate", "mt-bench/score"]
SIZE_AXES = ["*size*", "*num_examples*", "*n_pairs*", "*pairs*"]
STEP_AXES = ["*max_steps*", "*steps*", "*epochs*"]
MARGIN_CURVES = {"margin/prob": "probability margin σ(log π(y_w) − log π(y_l))",
                 "margin/logp_change": "log-prob margin change vs reference",
                 "rewards/margins": "reward margin β·(Δ log-ratio)"}
PREFERENCE_KINDS = ("dpo", "sdpo", "online_dpo")
MAX_LINES = 10


# ---------------------------------------------------------------- figure plumbing

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(n_panels: int, title: str, cols: int | None = None, width: float = 4.6):
    plt = _pyplot()
    cols = cols or min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows + 1.0), squeeze=False, layout="constrained")
    for extra in axes.flat[n_panels:]:
        extra.remove()
    fig.suptitle(title)
    return fig, list(axes.flat[:n_panels])


def _finish(fig, panels: list, footer: str) -> None:
    """Legends below the panels (one for the figure when every panel shows the same settings), and
    the provenance line at the bottom; space for both is kept out of the constrained layout."""
    height = fig.get_size_inches()[1]
    entries = [ax.get_legend_handles_labels() for ax in panels]
    labels = [tuple(names) for _, names in entries]
    bottom = 0.25  # inches: the provenance line
    if len(panels) > 1 and len(set(labels)) == 1 and labels[0]:
        ncol = min(3, len(labels[0]))
        fig.legend(*entries[0], loc="lower center", bbox_to_anchor=(0.5, bottom / height), ncol=ncol, fontsize=8,
                   frameon=False)
        bottom += 0.2 * math.ceil(len(labels[0]) / ncol) + 0.1
    else:
        for ax, (handles, names) in zip(panels, entries):
            if names:  # beside the panel: long setting labels never run into the neighbouring panels
                ax.legend(handles, names, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    fig.get_layout_engine().set(rect=(0, bottom / height, 1, 1 - bottom / height))  # (left, bottom, width, height)
    fig.text(0.01, 0.06 / height, footer, fontsize=7, color="0.35", ha="left", va="bottom")


def _label(keys: tuple, axes: list[str]) -> str:
    return ", ".join(f"{data.short_axis(a)}={data.format_value(v)}" for a, v in zip(axes, keys)) or "all trials"


def _lines(frame: pd.DataFrame, axes: list[str]):
    """(label, rows) per setting, in axis-value order; at most MAX_LINES (the rest noted by the caller)."""
    if not axes:
        return [("all trials", frame)]
    groups = {k if isinstance(k, tuple) else (k,): g for k, g in frame.groupby(axes, dropna=False, sort=False)}
    ordered = sorted(groups, key=lambda k: [data.sort_key(v) for v in k])
    return [(_label(k, axes), groups[k]) for k in ordered]


# ---------------------------------------------------------------- score vs an axis (scaling)

def _headline(con, study: str) -> list[str]:
    present = data.metric_names(con, study)
    picked = [m for m in HEADLINE_METRICS if m in present]
    return picked[:2] or present[:1]


def _match_axes(axes: list[str], patterns: list[str]) -> list[str]:
    return [a for a in axes if any(fnmatch.fnmatch(a, p) for p in patterns)]


def _numeric(frame: pd.DataFrame, axis: str) -> pd.Series:
    return pd.to_numeric(frame[axis], errors="coerce")


def _fit(ax, x: np.ndarray, y: np.ndarray, color) -> None:
    """numpy.polyfit of degree ≤ 2 (fewer with fewer distinct x), in log x when x spans 4× or more."""
    distinct = np.unique(x)
    degree = min(2, len(distinct) - 1)
    if degree < 1:
        return
    log = bool((distinct > 0).all() and distinct.max() / distinct.min() >= 4)
    xs = np.log10(x) if log else x
    coef = np.polyfit(xs, y, degree)
    grid = np.linspace(xs.min(), xs.max(), 100)
    ax.plot(10 ** grid if log else grid, np.polyval(coef, grid), linestyle="--", color=color, alpha=0.7, linewidth=1)
    if log:  # ticks at the values run, written plainly (not 2×10³)
        from matplotlib.ticker import NullLocator

        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(distinct, [data.format_value(float(v)) for v in distinct])


def score_vs(con, study: str, x_axis: str | None, x_label: str, title: str, x_values: pd.DataFrame | None = None):
    """Panels: one per headline metric. x from `x_axis` (an axis) or `x_values` (trial_id, x)."""
    metrics = _headline(con, study)
    if not metrics:
        raise NoData(f"study {study} has no eval scores")
    frame = data.scores(con, study, [data.metric_key(m) for m in metrics])
    axes = data.axes_of(data.trials(con, study))
    if x_values is not None:
        frame = frame.merge(x_values, on="trial_id")
    else:
        frame["x"] = _numeric(frame, x_axis)
    frame = frame[frame["x"].notna()]
    if frame["x"].nunique() < 2:
        raise NoData(f"study {study}: fewer than two values of {x_label} with scores")
    lines_by = [a for a in data.varying_axes(frame, axes) if a != x_axis]
    if x_axis is None:  # x derived per trial: an axis that fixes x (data size -> steps) is x's label, not a line
        lines_by = [a for a in lines_by if not (frame.groupby(a, dropna=False)["x"].nunique() <= 1).all()]
    fig, panels = _figure(len(metrics), title)
    for ax, metric in zip(panels, metrics):
        sub = frame[frame["benchmark"] + "/" + frame["metric"] == metric].drop_duplicates(["stage_key", "x"] + lines_by)
        lines = _lines(sub, lines_by)
        for i, (label, rows) in enumerate(lines[:MAX_LINES]):
            agg = rows.groupby("x")["value"].agg(["mean", "std", "count"]).reset_index().sort_values("x")
            err = (agg["std"] / np.sqrt(agg["count"])).where(agg["count"] > 1)
            color = f"C{i % 10}"
            ax.errorbar(agg["x"], agg["mean"], yerr=err.fillna(0), marker="o", linestyle="none", color=color,
                        label=label, capsize=2)
            _fit(ax, agg["x"].to_numpy(float), agg["mean"].to_numpy(float), color)
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.set_title(metric + (f" ({len(lines) - MAX_LINES} settings not shown)" if len(lines) > MAX_LINES else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
    _finish(fig, panels, data.provenance(con, study, list(frame["trial_id"])) + " · dashed: polynomial fit (deg ≤ 2)")
    return fig


def _axis_or_fail(con, study: str, patterns: list[str], what: str) -> str:
    trials = data.trials(con, study)
    numeric = [a for a in _match_axes(data.varying_axes(trials, data.axes_of(trials)), patterns)
               if _numeric(trials, a).notna().any()]
    if not numeric:
        raise NoData(f"study {study} has no numeric {what} axis (looked for {', '.join(patterns)})")
    return numeric[0]


@plot_preset("scaling_data_size")
def scaling_data_size(con, study: str):
    axis = _axis_or_fail(con, study, SIZE_AXES, "dataset-size")
    return score_vs(con, study, axis, axis, "Score vs dataset size")


@plot_preset("scaling_steps")
def scaling_steps(con, study: str):
    trials = data.trials(con, study)
    axes = _match_axes(data.varying_axes(trials, data.axes_of(trials)), STEP_AXES)
    if axes:
        return score_vs(con, study, axes[0], axes[0], "Score vs training steps")
    steps = data.trial_steps(con, study).rename(columns={"steps": "x"})
    return score_vs(con, study, None, "optimizer steps (all training stages, from manifests)", "Score vs training steps",
                    x_values=steps)


@plot_preset("online_samples")
def online_samples(con, study: str):
    axis = _axis_or_fail(con, study, ["*online_samples*"], "online sample count")
    return score_vs(con, study, axis, axis, "Score vs online DPO samples")


# ---------------------------------------------------------------- curves over training

def curve_panels(con, study: str, names: list[str], kinds, title: str, x_label: str, what: str, labels=None,
                 marker: str | None = None):
    """One panel per curve name present; lines are settings (axes that change the stage), seeds averaged."""
    frame = data.curves(con, study, names, kinds)
    present = [n for n in names if n in set(frame["name"])]
    if not present:
        names_there = dict.fromkeys(re.sub(r"/\d+$", "/<i>", n) for n in data.curve_names(con, study))
        have = ", ".join(list(names_there)[:16]) or "none"
        raise NoData(f"study {study} has no {what} curves ({', '.join(names)}); its curves: {have}")
    axes = data.axes_of(data.trials(con, study))
    fig, panels = _figure(len(present), title)
    used = []
    for ax, name in zip(panels, present):
        sub = frame[frame["name"] == name]
        lines_by = data.varying_axes(sub, data.stage_axes(sub, axes))
        lines = _lines(sub.drop_duplicates(["stage_key", "step"]), lines_by)
        for i, (label, rows) in enumerate(lines[:MAX_LINES]):
            agg = rows.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index().sort_values("step")
            color = f"C{i % 10}"
            ax.plot(agg["step"], agg["mean"], label=label, color=color, marker=marker, linewidth=1.3)
            err = (agg["std"] / np.sqrt(agg["count"])).where(agg["count"] > 1)
            if err.notna().any():
                ax.fill_between(agg["step"], agg["mean"] - err.fillna(0), agg["mean"] + err.fillna(0), color=color,
                                alpha=0.2, linewidth=0)
        ax.set_xlabel(x_label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title((labels or {}).get(name, name), fontsize=9)
        ax.grid(alpha=0.3)
        used += list(frame.loc[frame["name"] == name, "trial_id"])
    _finish(fig, panels, data.provenance(con, study, used) + " · lines: mean over seeds, band: ± stderr")
    return fig


@plot_preset("dpo_margin")
def dpo_margin(con, study: str):
    return curve_panels(con, study, list(MARGIN_CURVES), PREFERENCE_KINDS, "Margins over preference training",
                        "optimizer step", "preference-margin", labels=MARGIN_CURVES)


@plot_preset("sdpo_gamma")
def sdpo_gamma(con, study: str):
    return curve_panels(con, study, ["sdpo/gamma_ref_mean"], ("sdpo",), "Mean γ_ref per sDPO step", "sDPO step",
                        "sDPO γ_ref", labels={"sdpo/gamma_ref_mean": "mean γ_ref on the step's data"}, marker="o")


@plot_preset("loss_curves")
def loss_curves(con, study: str):
    frame = data.curves(con, study, ["loss"])
    if frame.empty:
        raise NoData(f"study {study} has no `loss` curves")
    stages = sorted(frame["stage"].unique(), key=lambda s: frame.loc[frame["stage"] == s, "kind"].iloc[0] != "sft")
    fig, panels = _figure(len(stages), "Training loss", cols=1, width=12)  # one row per stage: room for labels
    axes = data.axes_of(data.trials(con, study))
    for ax, stage in zip(panels, stages):
        sub = frame[frame["stage"] == stage]
        lines = _lines(sub.drop_duplicates(["stage_key", "step"]), data.varying_axes(sub, data.stage_axes(sub, axes)))
        for i, (label, rows) in enumerate(lines[:MAX_LINES]):
            agg = rows.groupby("step")["value"].mean()
            ax.plot(agg.index, agg.to_numpy(), label=label, color=f"C{i % 10}", linewidth=1.2)
        kinds = ", ".join(sorted(sub["kind"].dropna().unique()))
        ax.set_title(f"{stage} ({kinds})" if kinds and kinds != stage else stage, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    _finish(fig, panels, data.provenance(con, study, list(frame["trial_id"])) + " · lines: mean over seeds")
    return fig


# ---------------------------------------------------------------- entry point

def make_plot(preset: str, study: str | None = None, db_path=None, results_dir="results", out_dir=None,
              parquet: bool = False, note=print) -> list[Path]:
    """Draw a preset (or `all`: every preset some study has data for) to `<out_dir>/<preset>.{png,pdf}`."""
    from harness.store.query import open_readonly

    presets = load_plot_presets()
    names = sorted(presets) if preset == "all" else [preset]
    unknown = [n for n in names if n not in presets]
    if unknown:
        raise ConfigError(f"unknown plot preset {unknown[0]!r} (known: {', '.join(sorted(presets))}, all)", key="--preset")
    out_dir = Path(out_dir) if out_dir is not None else Path(results_dir) / "plots"
    paths: list[Path] = []
    with open_readonly(db_path=db_path, results_dir=results_dir, parquet=parquet) as con:
        for name in names:
            try:
                paths += _draw(con, name, presets[name], study, out_dir, note)
            except NoData as err:
                if preset != "all":
                    raise
                note(f"{name}: skipped: {err}")
    return paths


def _draw(con, name: str, draw, study: str | None, out_dir: Path, note) -> list[Path]:
    if study is not None:
        fig = draw(con, study)
    else:  # the latest study that has the data
        fig, studies = None, data.studies(con)
        for candidate in studies:
            try:
                fig = draw(con, candidate)
            except NoData:
                continue
            if len(studies) > 1:
                note(f"{name}: picked study {candidate}, the latest with the data (choose with --study)")
            break
        if fig is None:  # say why for the latest study
            draw(con, studies[0]) if studies else None
            raise NoData("the results store has no trials (run `harness ingest`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    _close(fig)
    return paths


def _close(fig) -> None:
    _pyplot().close(fig)


__all__ = ["PLOT_PRESETS", "make_plot"]
