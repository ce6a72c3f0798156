"""GPU figures of `harness bench all` (CUDA only): model FLOPs utilisation of SFT and DPO training steps
on a ~100M-parameter Llama (random weights, the toy tokenizer's vocabulary) with SDPA and with
flash-attn 2 when it is installed, and vllm's generation tokens/s on the same model when vllm is.

MFU = achieved model FLOP/s / the GPU's dense bf16 peak. Model FLOPs per token (as in the PaLM paper's
appendix B): 2·N + 4·L·d·S for a forward (DPO's reference model), three times that for a training
forward+backward; N excludes the embedding table, L·d·S is attention's QK^T and AV.
Not run in this repository's CI (it has no GPU).
"""
from __future__ import annotations

import tempfile
import time

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
SHAPE = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
         "num_key_value_heads": 12, "max_position_embeddings": 2048, "tie_word_embeddings": True}


def peak_flops() -> float | None:
    import torch

    name = torch.cuda.get_device_name()
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)


def build_model(attn: str):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from harness.toylab.build import toy_base_model_dir

    tokenizer = AutoTokenizer.from_pretrained(toy_base_model_dir())
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         **SHAPE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16)
    model.set_attn_implementation(attn)
    return model, tokenizer


def flops_per_token(model, seq_len: int, train: bool) -> float:
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    cfg = model.config
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * seq_len  # QK^T and AV, forward
    return (3 if train else 1) * (2 * n + attention)


def timed(step, steps: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def mfu(kind: str, attn: str, batch: int = 8, seq_len: int = 1024, steps: int = 10) -> float | None:
    """MFU of one training step: SFT (cross-entropy on batch×seq tokens) or DPO (policy forward+backward
    on chosen and rejected, plus a no-grad reference forward on both)."""
    import torch
    import torch.nn.functional as F

    model, _ = build_model(attn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rows = 2 * batch if kind == "dpo" else batch
    ids = torch.randint(0, model.config.vocab_size, (rows, seq_len), device="cuda")
    reference = build_model(attn)[0].eval() if kind == "dpo" else None

    def logps(m, grad: bool):
        with torch.set_grad_enabled(grad):
            logits = m(input_ids=ids).logits[:, :-1].float()
            return -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").sum(-1)

    def step():
        if kind == "sft":
            loss = -logps(model, True).mean() / seq_len
        else:
            policy, ref = logps(model, True), logps(reference, False)
            margin = (policy[:batch] - ref[:batch]) - (policy[batch:] - ref[batch:])
            loss = -F.logsigmoid(0.1 * margin).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, steps)
    flops = rows * seq_len * flops_per_token(model, seq_len, train=True)
    if reference is not None:
        flops += rows * seq_len * flops_per_token(reference, seq_len, train=False)
    peak = peak_flops()
    return None if peak is None else flops / seconds / peak


def vllm_tokens_per_s(prompts: int = 256, new_tokens: int = 256) -> float:
    import torch
    from vllm import LLM, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = build_model("sdpa")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        torch.cuda.empty_cache()
        llm = LLM(model=tmp, dtype="bfloat16", gpu_memory_utilization=0.5, enforce_eager=False)
        params = SamplingParams(max_tokens=new_tokens, ignore_eos=True, temperature=1.0, seed=0)
        text = [f"reverse: {'abcdefgh'[i % 8:]}{i}" for i in range(prompts)]
        llm.generate(text[:8], params)  # warm-up
        start = time.perf_counter()
        outputs = llm.generate(text, params)
        seconds = time.perf_counter() - start
    return sum(len(o.outputs[0].token_ids) for o in outputs) / seconds


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def gpu_figures(quick: bool) -> dict:
    import torch

    steps = 3 if quick else 10
    figures = []
    for kind in ("sft", "dpo"):
        for attn, label in (("sdpa", "SDPA"), ("flash_attention_2", "flash-attn")):
            name = f"{kind.upper()} step MFU, ~100M Llama, {label} (bf16, 8×1024 tokens)"
            if attn == "flash_attention_2" and not _available("flash_attn"):
                figures.append({"name": name, "value": "n/a (flash-attn not installed)", "status": "n/a"})
                continue
            value = mfu(kind, attn, steps=steps)
            figures.append({"name": name, "value": "n/a (unknown GPU peak)" if value is None else f"{100 * value:.1f}%"})
            torch.cuda.empty_cache()
    if _available("vllm"):
        figures.append({"name": "vllm generation tokens/s (~100M Llama, 256 prompts × 256 tokens)",
                        "value": f"{vllm_tokens_per_s(64 if quick else 256):,.0f} tokens/s"})
    else:
        figures.append({"name": "vllm generation tokens/s", "value": "n/a (vllm not installed)", "status": "n/a"})
    return {"gpu": torch.cuda.get_device_name(), "figures": figures}
