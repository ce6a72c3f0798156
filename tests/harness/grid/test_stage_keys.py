"""Properties of stage keys (harness/grid/expand.py): a key is a pure function of what a stage computes,
so equal work shares one key and any result-relevant difference gets its own."""
from hypothesis import given, settings, strategies as st

from harness.config.grid import GridConfig
from harness.grid.expand import NON_RESULT_KEYS, build_plan, stage_key

scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32), st.text(max_size=8), st.booleans(),
                    st.none())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3), max_leaves=8)
names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8).filter(lambda k: k not in NON_RESULT_KEYS)
configs = st.dictionaries(names, values, min_size=1, max_size=6)
kinds = st.sampled_from(["sft", "dpo", "sdpo", "online_dpo", "eval"])
parents = st.lists(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), max_size=2)
fingerprints = st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=16, max_size=16))


@settings(max_examples=200, deadline=None)
@given(kinds, configs, parents, fingerprints)
def test_key_ignores_key_order_and_is_sixteen_hex_digits(kind, config, parents, data):
    key = stage_key(kind, config, parents, data)
    assert key == stage_key(kind, dict(reversed(list(config.items()))), parents, data)
    assert len(key) == 16 and int(key, 16) >= 0


@settings(max_examples=200, deadline=None)
@given(kinds, configs, parents, fingerprints, st.data())
def test_any_result_relevant_change_changes_the_key(kind, config, parents, data, draw):
    key = stage_key(kind, config, parents, data)
    name = draw.draw(st.sampled_from(sorted(config)))
    new = draw.draw(values.filter(lambda v: v != config[name] and repr(v) != repr(config[name])))
    assert stage_key(kind, {**config, name: new}, parents, data) != key
    assert stage_key(kind, {k: v for k, v in config.items() if k != name}, parents, data) != key
    assert stage_key(kind, config, parents + ["f" * 16], data) != key
    assert stage_key(kind, config, parents, (data or "") + "0") != key
    other = draw.draw(kinds.filter(lambda k: k != kind))
    assert stage_key(other, config, parents, data) != key


@settings(max_examples=200, deadline=None)
@given(kinds, configs, parents, fingerprints, st.dictionaries(st.sampled_from(NON_RESULT_KEYS), values, min_size=1))
def test_where_and_how_often_a_stage_logs_or_saves_never_changes_its_key(kind, config, parents, data, extra):
    assert stage_key(kind, {**config, **extra}, parents, data) == stage_key(kind, config, parents, data)


SFT = {"data": [{"source": "toy:sft_mix", "size": 100}], "max_steps": 5, "batch_size": 8, "micro_batch_size": 8}
DPO = {"data": [{"source": "toy:prefs", "size": 50}], "max_steps": 5, "batch_size": 8, "micro_batch_size": 8}
levels = st.lists(st.sampled_from([1e-4, 2e-4, 5e-4, 1e-3]), min_size=1, max_size=3, unique=True)


@settings(max_examples=25, deadline=None)
@given(levels, st.lists(st.sampled_from([0.05, 0.1, 0.5]), min_size=1, max_size=3, unique=True),
       st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
       st.lists(st.sampled_from([1, 5, 10]), min_size=1, max_size=2, unique=True))
def test_plans_share_exactly_the_stages_whose_inputs_agree(sft_lrs, betas, seeds, log_every):
    grid = GridConfig.model_validate({
        "pipeline": {"sft": SFT, "dpo": DPO, "eval": {"suite": ["toy"], "limit": 4}},
        "grid": {"sft.lr": sft_lrs, "dpo.beta": betas, "sft.log_every": log_every}, "seeds": seeds})
    plan = build_plan(grid)
    again = build_plan(grid)
    assert plan.chains == again.chains  # keys are deterministic
    assert plan.counts() == {"sft": len(sft_lrs) * len(seeds), "dpo": len(sft_lrs) * len(betas) * len(seeds),
                             "eval": len(sft_lrs) * len(betas) * len(seeds)}  # log_every shares stages
    for point, chain in zip(plan.points, plan.chains):
        sft, dpo = chain[0], chain[1]
        assert plan.stages[dpo].parents == [sft]
        same_sft = [p.index for p in plan.points if (p.axes["sft.lr"], p.axes["seed"]) == (point.axes["sft.lr"],
                                                                                           point.axes["seed"])]
        assert plan.stages[sft].trials == same_sft


def test_a_toy_lab_code_change_rekeys_stages_built_on_the_toy_base_and_toy_data(monkeypatch):
    """The toy base model and toy datasets come from code, not files: a grid run after a toy-lab change must
    not reuse stages trained on the old ones (found when a rerun reused SFT stages of an older tokenizer)."""
    from harness.toylab import build

    grid = GridConfig.model_validate({"pipeline": {"sft": {**SFT, "model": {"path": "toy"}}, "eval": {"suite": ["toy"]}},
                                      "method": "none"})
    before = build_plan(grid).chains[0]
    monkeypatch.setattr(build, "toylab_source_hash", lambda: "other toy lab code")
    after = build_plan(grid).chains[0]
    assert before[0] != after[0] and before[1] != after[1]  # SFT re-keyed, so its eval too
