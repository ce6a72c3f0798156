"""Toy tasks: the verifier recomputes gold answers from any prompt; held-out prompts never train."""
import random

from harness.toylab.datasets import build_toy
from harness.toylab.tasks import TASKS, is_heldout, make_prompt, padded_answer, solve, verify, wrong_answer, Example


def test_every_task_is_solved_and_verified():
    rng = random.Random(0)
    for name in TASKS:
        prompt = make_prompt(name, rng)
        gold = solve(prompt)
        assert verify(prompt, gold).correct and verify(prompt, " " + gold + " ").score == 1.0
        example = Example(name, prompt, gold)
        assert not verify(prompt, wrong_answer(example, rng)).correct
        padded = verify(prompt, padded_answer(example))
        assert not padded.correct and padded.contains_gold and padded.score == 0.25


def test_known_answers():
    assert solve("reverse: a b c d") == "d c b a"
    assert solve("sort: 5 1 4 0") == "0 1 4 5"
    assert solve("add: 47 + 38") == "85"
    assert solve("count: b: a b b c") == "2"
    assert solve("lookup: c: a=4 c=7") == "7"
    assert solve("translate: hello") is None and verify("hello", "x").score == 0.0


def test_train_and_eval_sets_are_disjoint():
    train = {r["prompt"] for r in build_toy("prefs", 500, 0)}
    train |= {m["content"] for r in build_toy("sft_mix", 500, 0) for m in r["messages"] if m["role"] == "user"}
    held = {r["prompt"] for r in build_toy("eval", 300, 0)}
    assert not train & held and all(is_heldout(p) for p in held)


def test_sizes_are_parameters_and_seeded():
    assert len(build_toy("sft_mix", 123, 1)) == 123
    assert build_toy("prefs", 40, 2) == build_toy("prefs", 40, 2) != build_toy("prefs", 40, 3)
    kinds = {r["kind"] for r in build_toy("prefs", 200, 0)}
    assert kinds == {"correct_vs_wrong", "concise_vs_padded"}
    multi = [r for r in build_toy("sft_mix", 200, 0) if len(r["messages"]) == 4]
    assert multi, "the SFT mixture has two-turn chats"
