"""Policy sampling with the real toy model and tokenizer (HF backend; vllm needs a GPU)."""
from __future__ import annotations

import pytest

from trainers.sampling import render_prompts, sample_policy, vllm_available


def test_render_prompts_ends_with_assistant_turn(toy_tokenizer):
    (text,) = render_prompts(toy_tokenizer, ["reverse: a b c"])
    assert "reverse: a b c" in text
    assert text.rstrip().endswith("assistant")


def test_hf_samples_n_per_prompt_and_is_seeded(toy_model, toy_tokenizer):
    prompts = ["reverse: a b c d", "sort: 3 1 2 5", "add: 12 + 34"]
    kwargs = dict(n=4, temperature=1.0, max_new_tokens=8, backend="hf", batch_size=2)
    first, backend = sample_policy(toy_model, toy_tokenizer, prompts, seed=1, **kwargs)
    again, _ = sample_policy(toy_model, toy_tokenizer, prompts, seed=1, **kwargs)
    other, _ = sample_policy(toy_model, toy_tokenizer, prompts, seed=2, **kwargs)
    assert backend == "hf"
    assert [len(r) for r in first] == [4, 4, 4]
    assert first == again
    assert first != other
    assert len({r for rs in first for r in rs}) > 3  # temperature 1 on an untrained model: varied samples


def test_sampling_restores_model_mode_and_padding_side(toy_model, toy_tokenizer):
    toy_model.train()
    toy_tokenizer.padding_side = "right"
    sample_policy(toy_model, toy_tokenizer, ["sort: 1 0"], n=2, temperature=0.8, max_new_tokens=4, backend="hf")
    assert toy_model.training
    assert toy_tokenizer.padding_side == "right"


def test_auto_falls_back_to_hf_without_vllm(toy_model, toy_tokenizer, tmp_path):
    if vllm_available():
        pytest.skip("vllm and a GPU are present here")
    _, backend = sample_policy(toy_model, toy_tokenizer, ["sort: 2 1"], n=2, temperature=0.8, max_new_tokens=4,
                               backend="auto", model_dir=tmp_path)
    assert backend == "hf"


def test_vllm_without_model_dir_is_an_error(toy_model, toy_tokenizer):
    with pytest.raises(ValueError, match="model_dir"):
        sample_policy(toy_model, toy_tokenizer, ["sort: 2 1"], n=2, temperature=0.8, max_new_tokens=4, backend="vllm")


def test_vllm_failure_names_the_cause(tmp_path):
    """Without vllm installed the child process fails; the error says so instead of hanging or passing."""
    if vllm_available():
        pytest.skip("vllm and a GPU are present here")
    from trainers.sampling import sample_vllm

    with pytest.raises(RuntimeError, match="vllm"):
        sample_vllm(tmp_path, ["sort: 2 1"], n=2, temperature=0.8, max_new_tokens=4)
