"""Grid expansion (grid, zip, conditional axes, seeds), stage keys and shared-stage dedup."""
import pytest
from hypothesis import given, settings, strategies as st

from harness.config.grid import GridConfig
from harness.config.loader import ConfigError
from harness.grid.expand import build_plan, expand_points, load_plan, stage_key

SFT = {"data": [{"source": "toy:sft_mix", "size": 100}], "max_steps": 5, "batch_size": 8, "micro_batch_size": 8}
DPO = {"data": [{"source": "toy:prefs", "size": 50}], "max_steps": 5, "batch_size": 8, "micro_batch_size": 8}
SDPO = {**DPO, "split": "random", "steps": 2}


def grid(**kw):
    base = {"pipeline": {"sft": SFT, "dpo": DPO, "sdpo": SDPO, "eval": {"suite": ["toy"], "limit": 20}}}
    return GridConfig.model_validate({**base, **kw})


def test_cartesian_zip_conditional_and_seeds():
    g = grid(grid={"sft.packing": ["none", "isolated"], "method": ["dpo", "sdpo"]},
             zip=[{"dpo.beta": [0.1, 0.5], "dpo.lr": [1e-4, 1e-5]}],
             conditional=[{"when": {"method": "sdpo"}, "grid": {"sdpo.split": ["random", "stratified"]}}],
             seeds=[0, 1])
    points = expand_points(g)
    # 2 packing x (dpo: 1 + sdpo: 2 splits) x 2 zip rows x 2 seeds
    assert len(points) == 2 * 3 * 2 * 2
    assert all(("sdpo.split" in p.axes) == (p.axes["method"] == "sdpo") for p in points)
    assert {(p.axes["dpo.beta"], p.axes["dpo.lr"]) for p in points} == {(0.1, 1e-4), (0.5, 1e-5)}


def test_beta_sweep_shares_one_sft_and_keys_differ_per_beta():
    plan = build_plan(grid(grid={"dpo.beta": [0.01, 0.1, 0.5, 1.0]}))
    assert plan.counts() == {"sft": 1, "dpo": 4, "eval": 4}
    sft = [k for k, n in plan.stages.items() if n.kind == "sft"][0]
    assert plan.stages[sft].trials == [0, 1, 2, 3]


def test_stage_key_changes_with_any_result_relevant_change():
    base = stage_key("dpo", {"beta": 0.1, "threads": 1}, ["p"], "d")
    assert base == stage_key("dpo", {"beta": 0.1, "threads": 4}, ["p"], "d")  # threads: same result
    assert base != stage_key("dpo", {"beta": 0.2, "threads": 1}, ["p"], "d")
    assert base != stage_key("dpo", {"beta": 0.1, "threads": 1}, ["q"], "d")
    assert base != stage_key("dpo", {"beta": 0.1, "threads": 1}, ["p"], "e")


def test_seeds_make_distinct_sft_stages():
    plan = build_plan(grid(seeds=[0, 1, 2]))
    assert plan.counts()["sft"] == 3


def _plan_file(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


BASE = """pipeline:
  sft: {data: [{source: "toy:sft_mix"}], max_steps: 5, batch_size: 8, micro_batch_size: 8}
  dpo: {data: [{source: "toy:prefs"}], max_steps: 5, batch_size: 8, micro_batch_size: 8}
"""


@pytest.mark.parametrize("tail, expected", [
    ("grid:\n  dpo.beta: []\n", ":5: dpo.beta: empty axis"),
    ("grid:\n  dpo.beta: [0.1, -1]\n", ":5: dpo.beta: Input should be greater than 0"),
    ("grid:\n  dpo.betta: [0.1]\n", ":5: dpo.betta: Extra inputs are not permitted"),
    ("grid:\n  rlhf.beta: [0.1]\n", ":5: rlhf.beta: axis names no stage"),
    ("conditional:\n  - when: {dpo.beta: 0.1}\n    grid: {dpo.lr: [1.0]}\n", ":5: conditional[0].when.dpo.beta: conditional on an axis"),
    ("zip:\n  - {dpo.beta: [0.1, 0.2], dpo.lr: [1.0]}\n", ":5: zip[0]: zip axes differ in length"),
    ("seeds: oops\n", ":4: seeds: Input should be a valid list"),
    ("bogus: 1\n", ":4: bogus: unknown key"),
])
def test_bad_grids_are_one_line_errors(tmp_path, tail, expected):
    path = _plan_file(tmp_path, BASE + tail)
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    assert str(info.value).startswith(str(path)) and expected in str(info.value), str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["sft.lr", "sft.max_steps", "dpo.beta", "dpo.max_steps"]),
                       st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True), max_size=4),
       st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
def test_point_count_is_the_product_of_axis_sizes(axes, seeds):
    points = expand_points(grid(grid=axes, seeds=seeds))
    expected = len(seeds)
    for values in axes.values():
        expected *= len(values)
    assert len(points) == expected
    assert len({tuple(sorted(p.axes.items())) for p in points}) == expected  # all distinct
