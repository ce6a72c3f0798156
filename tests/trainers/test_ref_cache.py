"""Reference log-prob cache: hits, misses on what the values depend on, corrupt files, killed writers."""
import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.toylab.datasets import build_toy
from trainers.packing import tokenize_pairs
from trainers.ref_cache import RefLogpCache, cache_key, compute_reference_logps, reference_logps

PAIRS = build_toy("prefs", 10, seed=5)
REPO = Path(__file__).resolve().parents[2]


def _lookup(model, tokenizer, cache, reference_key="weights-a", max_length=64, pairs=PAIRS):
    rows, kept = tokenize_pairs(tokenizer, pairs, max_length)
    key = cache_key(reference_key, [pairs[i] for i in kept], max_length, tokenizer, str(model.dtype))
    return reference_logps(model, rows, tokenizer.pad_token_id, max_length, cache, key), key


def test_hit_on_same_weights_returns_identical_values(toy_model, toy_tokenizer, tmp_path):
    cache = RefLogpCache(tmp_path)
    (chosen, rejected, hit), key = _lookup(toy_model, toy_tokenizer, cache)
    assert not hit and cache.path(key).exists()
    (chosen2, rejected2, hit2), key2 = _lookup(toy_model, toy_tokenizer, cache)
    assert hit2 and key2 == key and chosen2 == chosen and rejected2 == rejected
    assert all(c < 0 for c in chosen) and len(chosen) == len(PAIRS)


def test_keyed_by_the_weight_files_not_the_path(toy_model, toy_tokenizer, tmp_path):
    from harness.data.models import weights_hash

    cache = RefLogpCache(tmp_path / "cache")
    toy_model.save_pretrained(tmp_path / "sft")
    toy_model.save_pretrained(tmp_path / "same-weights-other-name")
    (chosen, _, hit), _ = _lookup(toy_model, toy_tokenizer, cache, reference_key=weights_hash(tmp_path / "sft"))
    (_, _, hit_same), _ = _lookup(toy_model, toy_tokenizer, cache,
                                  reference_key=weights_hash(tmp_path / "same-weights-other-name"))
    with torch.no_grad():
        toy_model.lm_head.weight[:, 0] += 0.5
    toy_model.save_pretrained(tmp_path / "sft")  # new weights under the old path
    (chosen_new, _, hit_new), _ = _lookup(toy_model, toy_tokenizer, cache, reference_key=weights_hash(tmp_path / "sft"))
    assert (hit, hit_same, hit_new) == (False, True, False) and chosen_new != chosen


def test_miss_on_changed_weights_max_length_data_or_template(toy_model, toy_tokenizer, tmp_path):
    cache = RefLogpCache(tmp_path)
    _, base = _lookup(toy_model, toy_tokenizer, cache)
    (_, _, hit), other_weights = _lookup(toy_model, toy_tokenizer, cache, reference_key="weights-b")
    (_, _, hit_len), other_len = _lookup(toy_model, toy_tokenizer, cache, max_length=48)
    (_, _, hit_data), other_data = _lookup(toy_model, toy_tokenizer, cache, pairs=PAIRS[:-1])
    assert not (hit or hit_len or hit_data)
    assert len({base, other_weights, other_len, other_data}) == 4
    assert cache_key("weights-a", PAIRS, 64, toy_tokenizer, "torch.float32") == base
    other_template = copy.deepcopy(toy_tokenizer)  # the session fixture stays untouched
    other_template.chat_template = other_template.chat_template.replace("<|im_start|>", "<|im_start|> ")
    assert cache_key("weights-a", PAIRS, 64, other_template, "torch.float32") != base


def test_values_equal_a_fresh_computation(toy_model, toy_tokenizer):
    rows, _ = tokenize_pairs(toy_tokenizer, PAIRS, 64)
    full = compute_reference_logps(toy_model, rows, toy_tokenizer.pad_token_id, 64)
    # tiny token budget: one pair per batch, other pairs never share a row
    single = compute_reference_logps(toy_model, rows, toy_tokenizer.pad_token_id, 64, token_budget=1)
    assert torch.allclose(torch.tensor(full), torch.tensor(single), atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate", "flip_value", "garbage", "wrong_rows"])
def test_corrupt_or_partial_files_are_recomputed(toy_model, toy_tokenizer, tmp_path, damage):
    cache = RefLogpCache(tmp_path)
    (chosen, rejected, _), key = _lookup(toy_model, toy_tokenizer, cache)
    path = cache.path(key)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "flip_value":
        data = json.loads(text)
        data["chosen"][0] += 1.0
        path.write_text(json.dumps(data))
    elif damage == "garbage":
        path.write_bytes(os.urandom(200))
    else:
        data = json.loads(text)
        data["chosen"], data["rejected"] = data["chosen"][:-1], data["rejected"][:-1]
        path.write_text(json.dumps(data))
    assert cache.load(key, len(PAIRS)) is None
    (chosen2, rejected2, hit), _ = _lookup(toy_model, toy_tokenizer, cache)
    assert not hit and chosen2 == chosen and rejected2 == rejected
    assert cache.load(key, len(PAIRS)) == (chosen, rejected)  # rewritten whole


WRITER = """
import os, sys, time
from trainers.ref_cache import RefLogpCache
def stall(fd):  # the data is written, the rename has not happened: the worst moment to die
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stall
RefLogpCache(sys.argv[1]).store("k", [-1.5] * 100000, [-2.5] * 100000)
"""


def test_writer_killed_mid_write_leaves_no_file_under_the_final_name(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        temps = list(tmp_path.glob(".k.json.*.tmp"))
        assert temps and temps[0].stat().st_size > 0  # the payload was on its way
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    cache = RefLogpCache(tmp_path)
    assert not cache.path("k").exists() and cache.load("k", 100000) is None
    cache.store("k", [-1.0], [-2.0])
    assert cache.load("k", 1) == ([-1.0], [-2.0])


def test_no_cache_dir_means_no_files(toy_model, toy_tokenizer, tmp_path):
    cache = RefLogpCache(None)
    (_, _, hit), key = _lookup(toy_model, toy_tokenizer, cache)
    (_, _, hit2), _ = _lookup(toy_model, toy_tokenizer, cache)
    assert not hit and not hit2 and cache.load(key, len(PAIRS)) is None
