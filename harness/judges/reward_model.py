"""`reward_model`: a sequence-classification reward model (one logit) scores (prompt, response) pairs.

Used for best-of-n and online DPO (`score`), and for pairwise verdicts by score. A reward has
no 1-10 scale, so it cannot rate (MT-Bench refuses it before generating anything).
"""
from __future__ import annotations

from typing import Sequence

from harness.config.loader import ConfigError
from harness.judges import judge
from harness.judges.base import ScoreJudge
from harness.judges.local import pick_device


@judge("reward_model")
class RewardModelJudge(ScoreJudge):
    def __init__(self, cfg, cache=None, progress: bool = True):
        if not cfg.model:
            raise ConfigError("a reward_model judge needs `model`: a model directory or hub id", key="model")
        super().__init__(cfg, cache, progress)
        self._model = None

    def loaded(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            from harness.data.models import resolve_model_path

            path = resolve_model_path(self.cfg.model)
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, self.cfg.dtype))
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            if model.config.pad_token_id is None:  # needed to find each row's last token in a padded batch
                model.config.pad_token_id = tokenizer.pad_token_id
            self._model = (model.eval().to(pick_device(self.cfg.device)), tokenizer)
        return self._model

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        import torch

        model, tokenizer = self.loaded()
        tokenizer.padding_side = "right"
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                               tokenize=False) for p, r in zip(prompts, responses)]
        rewards: list[float | None] = []
        for start in range(0, len(texts), self.cfg.batch_size):
            enc = tokenizer(texts[start:start + self.cfg.batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.no_grad():
                logits = model(**enc).logits[:, 0].float()
            rewards += [float(x) if torch.isfinite(x) else None for x in logits]
        return rewards
