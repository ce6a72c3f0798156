"""Pydantic schemas shared by every stage, and the SFT stage.

Defaults are the LIONs paper's (arXiv 2407.06542) where it states them; toy configs
in `ablations/toy/` override them for CPU. Unknown keys are errors everywhere.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelSpec(Strict):
    """Where weights come from: `toy` (the toy lab's seeded base model), a hub id, or a local directory."""

    path: str = "toy"
    trust_remote_code: bool = False  # off unless a config says so; logged when on
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str | None = None  # default: varlen/flash for packed rows, sdpa otherwise


class DataSpec(Strict):
    """One data source. `source` is `toy:NAME`, a hub dataset id, or a local .jsonl/.json/.parquet path."""

    source: str
    split: str = "train"
    size: PositiveInt | None = None  # a seeded subset: same size and seed, same rows
    seed: int = 0
    weight: PositiveFloat = 1.0  # mixture weight (relative), used when several sources are given
    name: str | None = None  # label for the source (sDPO natural splits); defaults to `source`
    columns: dict[str, str] = {}  # rename columns to the harness schema, e.g. {question: prompt}

    @property
    def label(self) -> str:
        return self.name or self.source


def _data_list(value):
    """`data:` may be one source (string or mapping) or a list of them."""
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        value = [{"source": v} if isinstance(v, str) else v for v in value]
    return value


DataSources = Annotated[list[DataSpec], BeforeValidator(_data_list), Field(min_length=1)]


class LoopSpec(Strict):
    """Optimisation settings common to all trainers."""

    lr: PositiveFloat
    batch_size: PositiveInt  # effective batch, reached through gradient accumulation
    micro_batch_size: PositiveInt = 8
    epochs: PositiveFloat = 1.0
    max_steps: PositiveInt | None = None  # overrides epochs when set
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: PositiveFloat = 1.0
    seed: int = 0
    log_every: PositiveInt = 10
    save_every: PositiveInt | None = None  # checkpoint interval in steps (resume after preemption)
    threads: PositiveInt | None = None  # torch CPU threads; None keeps torch's default
    on_bad_rows: Literal["error", "skip"] = "error"  # skip: bad data rows are counted in the manifest

    @model_validator(mode="after")
    def _micro_divides_batch(self):
        if self.batch_size % min(self.micro_batch_size, self.batch_size):
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        return self

    @property
    def grad_accum(self) -> int:
        return max(1, self.batch_size // self.micro_batch_size)


class SFTConfig(LoopSpec):
    """Supervised fine-tuning. LION defaults: lr 2e-5, 3 epochs, batch 32, max length 2048."""

    stage: Literal["sft"] = "sft"
    model: ModelSpec = ModelSpec()
    data: DataSources
    output_dir: str | None = None
    packing: Literal["none", "concat", "isolated"] = "isolated"
    loss_mask: Literal["all", "assistant"] = "assistant"
    max_length: PositiveInt = 2048
    lr: PositiveFloat = 2e-5
    batch_size: PositiveInt = 32
    epochs: PositiveFloat = 3.0
