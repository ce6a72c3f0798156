"""Every YAML under ablations/ validates offline, and opens with the paper table/figure it mirrors and its command."""
from pathlib import Path

import pytest

from harness.config.loader import load_config
from harness.grid.expand import load_plan

ABLATIONS = Path(__file__).resolve().parents[3] / "ablations"
FILES = sorted(ABLATIONS.rglob("*.yaml"))


def _header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(l for l in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))])


def test_the_design_cards_grids_exist():
    names = {str(p.relative_to(ABLATIONS)) for p in FILES}
    for name in ("lion/sft_packing.yaml", "lion/dpo_beta.yaml", "lion/dpo_scaling.yaml", "lion/online_samples.yaml",
                 "sdpo/splits.yaml", "toy/demo.yaml", "toy/sft_packing.yaml", "toy/dpo_beta.yaml",
                 "toy/dpo_scaling.yaml", "toy/online_samples.yaml", "toy/sdpo_splits.yaml"):
        assert name in names, name


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ABLATIONS)))
def test_ablation_file_validates_and_names_its_source(path):
    header = _header(path)
    assert header.startswith("# ") and ("arXiv" in header or "Judge" in header), "first comment names the paper"
    assert "harness " in header or "tox -e demo" in header, "header gives the command that runs it"
    text = path.read_text()
    if "\nsearch:" in text:  # points are sampled while the search runs
        plan = load_plan(path)
        assert plan.grid.search is not None and not plan.points
    elif "\npipeline:" in text:
        plan = load_plan(path)
        assert plan.points and plan.stages
    elif path.parent.name == "judges":
        from harness.config.eval import JudgeConfig
        load_config(JudgeConfig, path)
    else:
        from harness.runner.stages import STAGE_CONFIGS, _import_stage_runners
        _import_stage_runners()
        load_config(STAGE_CONFIGS[path.stem], path)
