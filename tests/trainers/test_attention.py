"""Packed-row isolation: per-segment attention equals running each example alone; concat does not."""
import pytest
import torch

from trainers.attention import NAME, segment_lengths


def _examples(tokenizer):
    texts = [
        [{"role": "user", "content": "reverse: a b c d"}, {"role": "assistant", "content": "d c b a"}],
        [{"role": "user", "content": "add: 12 + 30"}, {"role": "assistant", "content": "42"}],
        [{"role": "user", "content": "sort: 5 1 4"}, {"role": "assistant", "content": "1 4 5"}],
    ]
    return [torch.tensor(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]) for m in texts]


def _packed_logits(model, examples, position_ids):
    row = torch.cat(examples).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=row, position_ids=position_ids, use_cache=False).logits[0]


def _alone_logits(model, examples):
    with torch.no_grad():
        return [model(input_ids=e.unsqueeze(0), use_cache=False).logits[0] for e in examples]


def test_segment_lengths_from_restarting_positions():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert segment_lengths(pos) == [[3, 2, 4]]


@pytest.mark.parametrize("attn", [NAME, "sdpa"])
def test_isolated_packing_equals_each_example_alone(toy_model, toy_tokenizer, attn):
    toy_model.set_attn_implementation(attn)
    examples = _examples(toy_tokenizer)
    restart = torch.cat([torch.arange(len(e)) for e in examples]).unsqueeze(0)
    packed = _packed_logits(toy_model, examples, restart)
    toy_model.set_attn_implementation("sdpa")
    alone = torch.cat(_alone_logits(toy_model, examples))
    assert torch.allclose(packed, alone, atol=1e-5), (packed - alone).abs().max()


def test_concat_packing_attends_across_examples(toy_model, toy_tokenizer):
    toy_model.set_attn_implementation("sdpa")
    examples = _examples(toy_tokenizer)
    continuous = torch.arange(sum(len(e) for e in examples)).unsqueeze(0)
    packed = _packed_logits(toy_model, examples, continuous)
    alone = _alone_logits(toy_model, examples)
    first, second_len = len(examples[0]), len(examples[1])
    # The first example sees nothing before it.
    assert torch.allclose(packed[:first], alone[0], atol=1e-5)
    # The second, run alone at the same absolute positions, differs: in the row it attended to the first.
    with torch.no_grad():
        shifted = toy_model(input_ids=examples[1].unsqueeze(0), position_ids=torch.arange(first, first + second_len).unsqueeze(0),
                            use_cache=False).logits[0]
    assert (packed[first:first + second_len] - shifted).abs().max() > 1e-3
