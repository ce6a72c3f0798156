"""Batched greedy/sampled generation with the model's chat template (HF `generate`, left padding)."""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm


def chat_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[str]:
    """Render user prompts (text or message lists) with the chat template and a generation prompt."""
    out = []
    for p in prompts:
        messages = [{"role": "user", "content": p}] if isinstance(p, str) else p
        out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return out


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str | list[dict]], *, max_new_tokens: int = 32, batch_size: int = 64,
             temperature: float = 0.0, num_return_sequences: int = 1, seed: int = 0, progress: bool = False,
             desc: str = "generate") -> list[list[str]]:
    """For each prompt, `num_return_sequences` completions (decoded, special tokens removed)."""
    model.eval()
    tokenizer.padding_side = "left"
    texts = chat_prompts(tokenizer, prompts)
    torch.manual_seed(seed)
    results: list[list[str]] = []
    bar = tqdm(total=len(texts), desc=desc, disable=not progress, unit="prompt")
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(model.device)
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
            num_return_sequences=num_return_sequences, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        completions = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i in range(0, len(completions), num_return_sequences):
            results.append([c.strip() for c in completions[i:i + num_return_sequences]])
        bar.update(len(batch["input_ids"]))
    bar.close()
    return results
