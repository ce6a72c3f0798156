"""The toy tokenizer and base model, built once per machine and cached by content hash.

Tokenizer: BPE over generated task text and ChatML turns; every digit, space and punctuation
mark is its own pre-token, so numbers stay single-digit tokens. The chat template is ChatML with
`{% generation %}` markers, so assistant-only loss masks come from the template itself.
Base model: a seeded random init of a ~1M-parameter Llama. No generic pretraining: measured
here, 45 s of it made later SFT worse (../shared/TOYLAB.md).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

BUILD_VERSION = 1  # bump when the build code changes what it produces

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] }}{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZER_SPEC = {"vocab_size": 512, "corpus_rows": 4000, "corpus_seed": 1234}
MODEL_SPEC = {
    "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
    "intermediate_size": 512, "max_position_embeddings": 4096, "tie_word_embeddings": True, "seed": 0,
}


def cache_root() -> Path:
    """HARNESS_CACHE, else ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


@lru_cache(maxsize=1)
def toylab_source_hash() -> str:
    """Hash of the toy lab's code (tasks, datasets, build). Part of every cache key: the tokenizer is
    trained on generated task text, so a task change without it left a stale tokenizer in old caches
    while fresh machines built another one, and the same spec gave different models."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def spec_hash(spec: dict) -> str:
    key = {**spec, "build_version": BUILD_VERSION, "toylab_source": toylab_source_hash()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def build_once(kind: str, spec: dict, build: Callable[[Path], None]) -> Path:
    """Return the cached directory for `spec`; build it (under a file lock, atomically) if missing."""
    final = cache_root() / kind / spec_hash(spec)
    if (final / "DONE").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "DONE").exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(tmp)
            (tmp / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
            (tmp / "DONE").write_text("")
            if final.exists():  # a partial dir from a killed build
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tokenizer_corpus(rows: int, seed: int) -> list[str]:
    from harness.toylab.datasets import build_toy

    corpus = []
    for row in build_toy("sft_mix", rows, seed):
        corpus.append("".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in row["messages"]))
    for row in build_toy("prefs", rows // 4, seed):
        corpus += [row["chosen"], row["rejected"]]
    return corpus


def _build_tokenizer(out: Path) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d|\s|[^\w\s]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_SPEC["vocab_size"], special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(TOKENIZER_SPEC["corpus_rows"], TOKENIZER_SPEC["corpus_seed"]), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>", chat_template=CHAT_TEMPLATE,
        additional_special_tokens=["<|im_start|>"], model_max_length=MODEL_SPEC["max_position_embeddings"],
    )
    fast.save_pretrained(out)


def toy_tokenizer_dir() -> Path:
    return build_once("toy-tokenizer", TOKENIZER_SPEC, _build_tokenizer)


def _build_model(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(toy_tokenizer_dir())
    spec = {k: v for k, v in MODEL_SPEC.items() if k != "seed"}
    config = LlamaConfig(
        vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **spec,
    )
    torch.manual_seed(MODEL_SPEC["seed"])
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=32,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)


BASE_SPEC = {"model": MODEL_SPEC, "tokenizer": TOKENIZER_SPEC}


def toy_base_identity() -> str:
    """What the toy base model is, without building it: its cache key (specs and toy-lab code)."""
    return spec_hash(BASE_SPEC)


def toy_base_model_dir() -> Path:
    """The toy base model (weights + tokenizer), a seeded init keyed by the tokenizer and model specs."""
    return build_once("toy-base", BASE_SPEC, _build_model)
