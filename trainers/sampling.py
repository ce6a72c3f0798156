"""Policy sampling for online DPO: `n` responses per prompt at a temperature.

backends:
  hf     transformers `generate` in this process (CPU, or GPU without vllm)
  vllm   vllm's offline `LLM.generate`, in a child process: vllm pins its own torch, so it may live in
         another environment (`python` = that environment's interpreter), and a child process gives
         the GPU memory back before DPO trains
  auto   vllm when a GPU is present and vllm is importable by `python`, else hf

This module imports only the standard library at the top, so the vllm child can run it as a plain
script (`python trainers/sampling.py IN.json OUT.json`) in an environment without this package.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence


def render_prompts(tokenizer, prompts: Sequence[str]) -> list[str]:
    """User prompts rendered with the chat template, ready for the assistant turn."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


def sample_hf(model, tokenizer, prompts: Sequence[str], *, n: int, temperature: float, max_new_tokens: int,
              batch_size: int = 64, seed: int = 0) -> list[list[str]]:
    """`n` sampled completions per prompt with transformers `generate` (left padding, batched)."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    texts = render_prompts(tokenizer, prompts)
    out: list[list[str]] = []
    try:
        for start in range(0, len(texts), batch_size):
            torch.manual_seed(seed + start)  # each batch seeded on its own: resumable, order-independent
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.no_grad():
                ids = model.generate(**batch, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                     max_new_tokens=max_new_tokens, num_return_sequences=n,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            decoded = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [[d.strip() for d in decoded[i:i + n]] for i in range(0, len(decoded), n)]
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return out


def vllm_available(python: str | None = None) -> bool:
    """True when a GPU is visible and `python` (default: this interpreter) can import vllm."""
    if python in (None, sys.executable):
        import importlib.util

        import torch

        return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
    probe = "import torch, vllm; raise SystemExit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def sample_vllm(model_dir: str | Path, prompts: Sequence[str], *, n: int, temperature: float, max_new_tokens: int,
                seed: int = 0, python: str | None = None, gpu_memory_utilization: float = 0.5) -> list[list[str]]:
    """`n` completions per prompt from vllm's offline API, run in a child process (see module doc)."""
    request = {"model_dir": str(model_dir), "prompts": list(prompts), "n": n, "temperature": temperature,
               "max_new_tokens": max_new_tokens, "seed": seed, "gpu_memory_utilization": gpu_memory_utilization}
    with tempfile.TemporaryDirectory(prefix="vllm-sample-") as tmp:
        src, dst = Path(tmp) / "request.json", Path(tmp) / "result.json"
        src.write_text(json.dumps(request))
        # -I: the script's folder (trainers/) must not shadow the child's imports
        proc = subprocess.run([python or sys.executable, "-I", str(Path(__file__).resolve()), str(src), str(dst)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not dst.exists():
            tail = " ".join(proc.stderr.split()[-60:])
            raise RuntimeError(f"vllm sampling failed (exit {proc.returncode}): {tail}")
        return json.loads(dst.read_text())["responses"]


def _vllm_worker(request_path: str, result_path: str) -> None:
    """Child-process body: load the model into vllm, sample, write the responses as JSON."""
    from vllm import LLM, SamplingParams

    req = json.loads(Path(request_path).read_text())
    llm = LLM(model=req["model_dir"], seed=req["seed"], gpu_memory_utilization=req["gpu_memory_utilization"])
    tokenizer = llm.get_tokenizer()
    params = SamplingParams(n=req["n"], temperature=req["temperature"], top_p=1.0,
                            max_tokens=req["max_new_tokens"], seed=req["seed"])
    outputs = llm.generate(render_prompts(tokenizer, req["prompts"]), params, use_tqdm=False)
    responses = [[c.text.strip() for c in o.outputs] for o in outputs]
    Path(result_path).write_text(json.dumps({"responses": responses}))


def sample_policy(model, tokenizer, prompts: Sequence[str], *, n: int, temperature: float, max_new_tokens: int,
                  backend: str = "auto", model_dir: str | Path | None = None, batch_size: int = 64, seed: int = 0,
                  python: str | None = None) -> tuple[list[list[str]], str]:
    """(responses per prompt, backend used). vllm needs `model_dir`: the policy's saved weights."""
    if backend == "auto":
        backend = "vllm" if model_dir is not None and vllm_available(python) else "hf"
    if backend == "vllm":
        if model_dir is None:
            raise ValueError("vllm sampling needs the policy saved to a directory (model_dir)")
        return sample_vllm(model_dir, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                           seed=seed, python=python), "vllm"
    if backend != "hf":
        raise ValueError(f"unknown sampling backend {backend!r} (hf, vllm, auto)")
    return sample_hf(model, tokenizer, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, seed=seed), "hf"


if __name__ == "__main__":
    _vllm_worker(sys.argv[1], sys.argv[2])
