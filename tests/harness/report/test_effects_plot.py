"""The `effects` plot preset: a forest plot of paired effects with CIs, one panel per benchmark."""
from harness.report.plots import make_plot
from harness.report.presets import load_plot_presets
from harness.store.query import open_readonly


def test_forest_plot_has_one_panel_per_benchmark_with_every_effect(ingested_tree, tmp_path):
    import matplotlib.pyplot as plt

    assert "effects" in load_plot_presets()
    with open_readonly(results_dir=ingested_tree.results) as con:
        fig = load_plot_presets()["effects"](con, "lion_toy")
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == "toy/accuracy" and len(titles) == 5  # toy, alpaca-eval, arena-hard, mt-bench, openllm
        labels = sorted(t.get_text() for t in fig.axes[0].get_yticklabels())
        assert labels == ["beta: 0.5 vs 0.1 (n=8)", "loss_mask: assistant vs all (n=8)", "packing: none vs isolated (n=8)"]
        assert any("study lion_toy" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)
    paths = make_plot("effects", "lion_toy", results_dir=ingested_tree.results, out_dir=tmp_path)
    assert [p.name for p in paths] == ["effects.png", "effects.pdf"] and all(p.stat().st_size > 5000 for p in paths)

