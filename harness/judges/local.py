"""`local`: an HF causal LM as judge, fed the same official prompt templates as an API judge.

The judge conversation goes through the judge model's own chat template; decoding is greedy at
temperature 0. For formats that read logprobs (AlpacaEval's "m"/"M"), the first generated
token's top logprobs are returned in the OpenAI format, so the same parser reads them.
"""
from __future__ import annotations

from harness.config.loader import ConfigError
from harness.judges import judge
from harness.judges.base import CallFailed, ChatJudge
from harness.judges.protocols import make_choice


def pick_device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


@judge("local")
class LocalJudge(ChatJudge):
    def __init__(self, cfg, cache=None, progress: bool = True):
        if not cfg.model:
            raise ConfigError("a local judge needs `model`: a model directory or hub id", key="model")
        super().__init__(cfg, cache, progress)
        self._model = None
        self._identity = None

    def identity(self) -> dict:
        if self._identity is None:
            from harness.data.models import weights_hash

            try:
                weights = weights_hash(self.cfg.model)  # the same path with new weights is another judge
            except (ConfigError, OSError):
                weights = None  # a hub id
            self._identity = {"type": "local", "model": self.cfg.model, "weights": weights,
                              "temperature": self.cfg.temperature}
        return self._identity

    def loaded(self):
        if self._model is None:
            from harness.config.schema import ModelSpec
            from harness.data.models import load_model

            model, tokenizer = load_model(ModelSpec(path=self.cfg.model, dtype=self.cfg.dtype), for_training=False)
            self._model = (model.to(pick_device(self.cfg.device)), tokenizer)
        return self._model

    def _complete(self, requests, done):
        for start in range(0, len(requests), self.cfg.batch_size):
            batch = requests[start:start + self.cfg.batch_size]
            try:
                outcomes = self._generate(batch)
            except (RuntimeError, ValueError) as err:  # e.g. out of memory, a prompt past the context
                outcomes = [CallFailed(f"local judge failed: {' '.join(str(err).split())[:200]}")] * len(batch)
            for k, outcome in enumerate(outcomes, start=start):
                done(k, outcome)

    def _generate(self, batch) -> list[dict]:
        import torch

        model, tokenizer = self.loaded()
        options = batch[0][1]  # one benchmark format per call: the same options throughout
        tokenizer.padding_side = "left"
        texts = [render_chat(tokenizer, messages) for messages, _ in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sample = self.cfg.temperature > 0
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=options["max_tokens"], do_sample=sample,
                                 temperature=self.cfg.temperature if sample else None, top_p=None, top_k=None,
                                 output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new_tokens = out.sequences[:, enc["input_ids"].shape[1]:]
        answers = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        first = torch.log_softmax(out.scores[0].float(), dim=-1)
        choices = []
        for row, text in enumerate(answers):
            top = None
            if options["logprobs"]:
                values, ids = first[row].topk(options["top_logprobs"])
                top = [{"token": tokenizer.decode([int(i)]), "logprob": float(v)} for v, i in zip(values, ids)]
            choices.append(make_choice(text.strip(), top))
        return choices


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The chat template's rendering; templates without a system role get it prepended to the first user turn."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja raises its own errors for unsupported roles
        if messages and messages[0]["role"] == "system":
            system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
            rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
            return tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)
        raise
