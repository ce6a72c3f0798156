"""harness.report.plots: every preset drawn from an ingested real results tree."""
from __future__ import annotations

import pytest

from harness.config.loader import ConfigError
from harness.report.data import NoData
from harness.report.plots import PLOT_PRESETS, make_plot
from harness.store.query import open_readonly

STUDY_OF = {"scaling_data_size": "toy_scaling", "scaling_steps": "toy_scaling", "online_samples": "toy_scaling",
            "dpo_margin": "lion_toy", "sdpo_gamma": "toy_sdpo", "loss_curves": "lion_toy"}


@pytest.fixture(scope="module")
def results(ingested_tree):
    return ingested_tree.results


def test_every_preset_of_this_module_is_tested():
    from harness.report import plots

    assert set(STUDY_OF) == {name for name, fn in PLOT_PRESETS.items() if fn.__module__ == plots.__name__}


@pytest.mark.parametrize("preset", sorted(STUDY_OF))
def test_preset_figure_has_labelled_non_empty_panels(results, preset):
    import matplotlib.pyplot as plt

    with open_readonly(results_dir=results) as con:
        fig = PLOT_PRESETS[preset](con, STUDY_OF[preset])
    try:
        assert fig.axes
        for ax in fig.axes:
            assert ax.lines or ax.collections, f"{preset}: empty panel {ax.get_title()}"
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        labels = [t.get_text() for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
                  for t in legend.get_texts()]
        assert labels, f"{preset}: no legend"
        assert any("study " + STUDY_OF[preset] in t.get_text() and "git 0123456789ab" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)


def test_scaling_plot_fits_a_polynomial_per_setting(results):
    import matplotlib.pyplot as plt

    with open_readonly(results_dir=results) as con:
        fig = PLOT_PRESETS["scaling_data_size"](con, "toy_scaling")
    ax = fig.axes[0]
    fits = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(fits) == 2  # one per online_samples value
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "sft.data.0.size"
    y = fits[0].get_ydata()
    assert y[-1] > y[0]  # the planted effect: score rises with data size
    plt.close(fig)


def test_curves_follow_settings_not_trials(results):
    """The SFT panel has one line per SFT setting: β does not change an SFT stage shared across it."""
    import matplotlib.pyplot as plt

    with open_readonly(results_dir=results) as con:
        fig = PLOT_PRESETS["loss_curves"](con, "lion_toy")
    sft, pref = fig.axes
    assert sft.get_title() == "sft" and len(sft.lines) == 4
    assert all("beta" not in t.get_text() for t in sft.get_legend().get_texts())
    assert pref.get_title() == "preference (dpo)" and len(pref.lines) == 8
    plt.close(fig)


def test_missing_data_is_a_clear_one_line_error(results):
    with pytest.raises(NoData) as err:
        make_plot("sdpo_gamma", study="lion_toy", results_dir=results, out_dir=results / "nowhere")
    message = str(err.value)
    assert "\n" not in message and "no sDPO γ_ref curves (sdpo/gamma_ref_mean)" in message and "loss" in message
    with pytest.raises(NoData, match="no numeric online sample count axis"):
        make_plot("online_samples", study="toy_sdpo", results_dir=results)
    with pytest.raises(ConfigError, match="unknown plot preset 'nope'"):
        make_plot("nope", results_dir=results)


def test_cli_plot_all_writes_png_and_pdf_and_skips_with_a_note(results, tmp_path, capsys):
    from harness.cli import main

    assert main(["plot", "--preset", "all", "--study", "toy_sdpo", "--results", str(results),
                 "--out-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    drawn = {"sdpo_gamma", "dpo_margin", "loss_curves"}
    assert set(captured.out.split()) >= {str(tmp_path / f"{n}.{ext}") for n in drawn for ext in ("png", "pdf")}
    for name in drawn:
        png, pdf = (tmp_path / f"{name}.png").read_bytes(), (tmp_path / f"{name}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert "scaling_data_size: skipped: study toy_sdpo has no numeric dataset-size axis" in captured.err
    assert not (tmp_path / "scaling_data_size.png").exists()
