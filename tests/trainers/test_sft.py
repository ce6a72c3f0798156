"""SFT recipe: TRL's tokenization and collation under each packing and loss-mask mode."""
import pytest
import torch
from datasets import Dataset
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from harness.config.schema import SFTConfig
from trainers.attention import NAME
from trainers.sft import trl_config

CHATS = [
    [{"role": "user", "content": "reverse: a b c d"}, {"role": "assistant", "content": "d c b a"},
     {"role": "user", "content": "add: 12 + 30"}, {"role": "assistant", "content": "42"}],
    [{"role": "user", "content": "sort: 5 1 4"}, {"role": "assistant", "content": "1 4 5"}],
    [{"role": "user", "content": "count a: a b a"}, {"role": "assistant", "content": "2"}],
]


def _tokenized(tokenizer, loss_mask="assistant", packing="none", tmp_path="/tmp"):
    """The dataset exactly as TRL's SFTTrainer prepares it for this config."""
    from trl import SFTTrainer
    from transformers import AutoModelForCausalLM

    from harness.toylab.build import toy_base_model_dir

    cfg = SFTConfig(data=["toy:sft_mix"], packing=packing, loss_mask=loss_mask, max_length=64, max_steps=1,
                    micro_batch_size=4, batch_size=4)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(toy_base_model_dir()),
                         args=trl_config(cfg, tmp_path), train_dataset=Dataset.from_list([{"messages": c} for c in CHATS]),
                         processing_class=tokenizer)
    return trainer.train_dataset, trainer.data_collator


def test_assistant_labels_cover_exactly_the_assistant_turns(toy_tokenizer, tmp_path):
    dataset, collate = _tokenized(toy_tokenizer, tmp_path=tmp_path)
    batch = collate([dataset[i] for i in range(len(dataset))])
    for row, labels, chat in zip(batch["input_ids"], batch["labels"], CHATS):
        target_text = toy_tokenizer.decode(row[labels != -100])
        expected = "".join(m["content"] + "<|im_end|>" for m in chat if m["role"] == "assistant")
        assert target_text == expected


def test_all_token_loss_targets_every_real_token(toy_tokenizer, tmp_path):
    dataset, collate = _tokenized(toy_tokenizer, loss_mask="all", tmp_path=tmp_path)
    batch = collate([dataset[i] for i in range(len(dataset))])
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"] != -100, real)


def test_packed_loss_equals_token_weighted_padded_loss(toy_model, toy_tokenizer, tmp_path):
    dataset, padded_collate = _tokenized(toy_tokenizer, tmp_path=tmp_path)
    rows = [{k: dataset[i][k] for k in ("input_ids", "labels")} for i in range(len(dataset))]
    padded = padded_collate(rows)
    packed = DataCollatorForLanguageModeling(pad_token_id=toy_tokenizer.pad_token_id, padding_free=True)(
        list(pack_dataset(Dataset.from_list(rows), 64, "bfd")))
    assert "attention_mask" not in packed and packed["position_ids"].shape[0] == 1
    with torch.no_grad():
        toy_model.set_attn_implementation("sdpa")
        padded_loss = toy_model(**padded, use_cache=False).loss
        toy_model.set_attn_implementation(NAME)
        packed_loss = toy_model(**packed, use_cache=False).loss
    # transformers averages over all target tokens of the batch: the token-weighted mean in both cases
    assert abs(packed_loss.item() - padded_loss.item()) < 1e-5


def test_trl_config_maps_packing_modes():
    base = dict(data=["toy:sft_mix"], micro_batch_size=4, batch_size=8)
    none = trl_config(SFTConfig(packing="none", **base), "/tmp/x")
    concat = trl_config(SFTConfig(packing="concat", **base), "/tmp/x")
    isolated = trl_config(SFTConfig(packing="isolated", loss_mask="all", **base), "/tmp/x")
    assert not none.packing and none.assistant_only_loss
    assert concat.packing and concat.packing_strategy == "wrapped" and not concat.padding_free
    assert isolated.packing and isolated.packing_strategy == "bfd" and not isolated.assistant_only_loss
    assert none.gradient_accumulation_steps == 2 and not none.bf16 and not none.gradient_checkpointing


@pytest.mark.slow
def test_assistant_only_loss_beats_all_token_loss(tmp_path):
    """LIONs' SFT finding, reproduced on the toy mixture at a fixed step budget (../shared/TOYLAB.md)."""
    accuracy = {mask: _train_and_score(tmp_path / mask, mask) for mask in ("assistant", "all")}
    assert accuracy["assistant"] > accuracy["all"] + 0.05, accuracy


def _train_and_score(out, loss_mask, steps=300):
    from harness.config.schema import ModelSpec
    from harness.data.models import load_model
    from harness.data.sources import load_mixture
    from harness.evals.toy import toy_eval
    from trainers.sft import train_sft

    cfg = SFTConfig(data=[{"source": "toy:sft_mix", "size": 4000}], packing="none", loss_mask=loss_mask, max_length=128,
                    lr=2e-3, batch_size=64, micro_batch_size=64, max_steps=steps, warmup_ratio=0.05, threads=2, log_every=100)
    rows, _ = load_mixture(cfg.data, "sft")
    model, tokenizer = load_model(ModelSpec())
    train_sft(model, tokenizer, Dataset.from_list(rows), cfg, out)
    return toy_eval(model, tokenizer, n=300)[0][0]["value"]
