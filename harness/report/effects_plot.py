"""Plot preset `effects`: a forest plot of main effects with 95% bootstrap CIs, one panel per benchmark
(its headline metric). Effects within noise are grey; the grey band is ±2·noise of the mean difference."""
from __future__ import annotations

import math

import numpy as np

from harness.report import data
from harness.report.data import NoData
from harness.report.presets import plot_preset

N_BOOT_PLOT = 1000


def headline_metrics(results) -> list[tuple[str, str]]:
    """Per benchmark: the first of plots.HEADLINE_METRICS it has, else its first metric with a stderr."""
    from harness.report.effects import metrics_of
    from harness.report.plots import HEADLINE_METRICS

    chosen: dict[str, tuple[str, str]] = {}
    candidates = metrics_of(results)
    for benchmark, metric in candidates:
        preferred = f"{benchmark}/{metric}" in HEADLINE_METRICS
        if benchmark not in chosen or (preferred and f"{benchmark}/{chosen[benchmark][1]}" not in HEADLINE_METRICS):
            chosen[benchmark] = (benchmark, metric)
    return list(chosen.values())


@plot_preset("effects")
def effects_forest(con, study: str):
    from harness.report.effects import main_effects
    from harness.report.effects_report import load_results
    from harness.report.plots import _figure, _finish

    results = load_results(con, study)
    metrics = headline_metrics(results)
    frame = main_effects(results, metrics, n_boot=N_BOOT_PLOT)
    frame = frame[frame["n_pairs"] > 0] if not frame.empty else frame
    if frame.empty:
        raise NoData(f"study {study} has no paired effects (needs an axis with two levels and scores)")
    panels_of = list(dict.fromkeys(zip(frame["benchmark"], frame["metric"])))
    fig, panels = _figure(len(panels_of), f"Effects vs reference level (study {study})")
    for ax, (benchmark, metric) in zip(panels, panels_of):
        _forest(ax, frame[(frame["benchmark"] == benchmark) & (frame["metric"] == metric)])
        ax.set_title(f"{benchmark}/{metric}", fontsize=9)
    _finish(fig, panels, data.provenance(con, study, list(results.trials["trial_id"]))
            + " · bars: 95% CI over paired trials · grey: within noise")
    return fig


def _forest(ax, rows) -> None:
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows.itertuples()):
        color = "0.55" if r.within_noise else "C0"
        if not math.isnan(r.noise):
            ax.fill_betweenx([yi - 0.3, yi + 0.3], -2 * r.noise, 2 * r.noise, color="0.9", zorder=0)
        low, high = (r.ci_low, r.ci_high) if not math.isnan(r.ci_low) else (r.mean_diff, r.mean_diff)
        ax.errorbar(r.mean_diff, yi, xerr=[[r.mean_diff - low], [high - r.mean_diff]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_yticks(y, [f"{data.short_axis(r.axis)}: {data.format_value(r.level)} vs {data.format_value(r.reference)} "
                      f"(n={r.n_pairs})" for r in rows.itertuples()], fontsize=7)
    ax.set_xlabel("difference (level − reference)")
    ax.grid(axis="x", alpha=0.3)
