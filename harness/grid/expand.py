"""Grid expansion: axes -> points -> per-point stage chains -> a deduplicated stage graph.

A stage's key is a hash of its resolved config (minus where its model comes from), the keys of
its parent stages and its data fingerprint: the same key means the same result, trained once.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.grid import STAGE_NAMES, TOP_LEVEL_AXES, GridConfig
from harness.config.loader import ConfigError, KeyPath, apply_overrides, dotted, line_of, read_yaml, validate, validation_error

# Keys that do not change what a stage computes (where it runs, where it writes).
NON_RESULT_KEYS = ("output_dir", "threads", "log_every", "save_every")


@dataclass
class Point:
    index: int
    axes: dict[str, Any]


@dataclass
class StageNode:
    key: str
    kind: str  # sft | dpo | sdpo | online_dpo | eval   (sft_continue trains with kind sft)
    name: str  # its role in a trial: sft, preference, online_dpo, eval:final ...
    config: dict  # resolved stage config; model.path is `stage:<parent key>` until launch
    parents: list[str] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)

    @property
    def dirname(self) -> str:
        return f"{self.kind}-{self.key}"


@dataclass
class Plan:
    grid: GridConfig
    file: str
    points: list[Point]
    stages: dict[str, StageNode]  # key -> node, in topological order
    chains: list[list[str]]  # per point: its stage keys in run order

    @property
    def study(self) -> str:
        return self.grid.study or Path(self.file).stem

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.stages.values():
            out[node.kind] = out.get(node.kind, 0) + 1
        return out


def _axis_line(lines, section: str, axis: str, index: int | None = None) -> int | None:
    path: KeyPath = (section,) if index is None else (section, index)
    return line_of(lines, path + (axis,))


def _check_axes(grid: GridConfig, file: str, lines) -> None:
    known_stages = set(grid.pipeline)
    blocks = [("grid", None, grid.grid)] + [("zip", i, z) for i, z in enumerate(grid.zip)]
    blocks += [("conditional", i, c.grid) for i, c in enumerate(grid.conditional)]
    for section, index, axes in blocks:
        for axis, values in axes.items():
            line = _axis_line(lines, section, axis, index) if section != "conditional" else line_of(lines, ("conditional", index, "grid", axis))
            head = axis.split(".")[0]
            if axis not in TOP_LEVEL_AXES and head not in known_stages:
                raise ConfigError(f"axis names no stage of the pipeline (stages here: {', '.join(sorted(known_stages)) or 'none'})",
                                  file=file, line=line, key=axis)
            if not isinstance(values, list) or not values:
                raise ConfigError("empty axis: give at least one value", file=file, line=line, key=axis)
    for i, z in enumerate(grid.zip):
        lengths = {axis: len(v) for axis, v in z.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"zip axes differ in length: {lengths}", file=file, line=line_of(lines, ("zip", i)), key=f"zip[{i}]")
    axes = set(grid.grid) | {a for z in grid.zip for a in z}
    for i, cond in enumerate(grid.conditional):
        for axis in cond.when:
            if axis not in axes and axis not in TOP_LEVEL_AXES:
                raise ConfigError("conditional on an axis that the grid does not vary", file=file,
                                  line=line_of(lines, ("conditional", i, "when", axis)), key=f"conditional[{i}].when.{axis}")


def _product(axes: dict[str, list]) -> list[dict]:
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def expand_points(grid: GridConfig) -> list[Point]:
    combos = _product(grid.grid) if grid.grid else [{}]
    for z in grid.zip:
        rows = [dict(zip(z, values)) for values in zip(*z.values())]
        combos = [{**c, **r} for c in combos for r in rows]
    for cond in grid.conditional:
        expanded = []
        for c in combos:
            applies = all(c.get(k, getattr(grid, k, None)) == v for k, v in cond.when.items())
            expanded += [{**c, **extra} for extra in _product(cond.grid)] if applies else [c]
        combos = expanded
    points = [{**c, "seed": s} for c in combos for s in grid.seeds]
    return [Point(i, p) for i, p in enumerate(points)]


def _stage_configs(grid: GridConfig, point: Point) -> tuple[dict[str, dict], str, bool]:
    """The pipeline with this point's axis values applied, plus its method and online flag."""
    pipeline = copy.deepcopy(grid.pipeline)
    method, online = point.axes.get("method", grid.method), point.axes.get("online", grid.online)
    overrides = [f"{axis}={json.dumps(value)}" for axis, value in point.axes.items() if axis not in TOP_LEVEL_AXES + ("seed",)]
    pipeline = apply_overrides(pipeline, overrides)
    for name, cfg in pipeline.items():
        if name != "eval" and isinstance(cfg, dict) and "from" not in cfg:
            cfg["seed"] = point.axes["seed"]
    return pipeline, method, online


def _config_error(err: ValidationError, file: str, lines, stage: str, point: Point) -> ConfigError:
    loc = (stage,) + tuple(err.errors()[0]["loc"])
    axis = dotted(loc)
    if axis in point.axes:
        return ConfigError(err.errors()[0]["msg"], file=file, line=line_of(lines, ("grid", axis)), key=axis)
    wrapped = validation_error(err, file, lines)
    return ConfigError(wrapped.reason, file=file, line=line_of(lines, ("pipeline",) + loc), key=f"pipeline.{axis}")


def stage_key(kind: str, config: dict, parents: list[str], data_fp: str | None) -> str:
    payload = {k: v for k, v in config.items() if k not in NON_RESULT_KEYS}
    model = config.get("model")
    if isinstance(model, dict) and model.get("path") == "toy":  # the toy base is built by code: key it by that
        from harness.toylab.build import toy_base_identity

        payload["toy_base"] = toy_base_identity()
    text = json.dumps({"kind": kind, "config": payload, "parents": parents, "data": data_fp}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Builder:
    def __init__(self, grid: GridConfig, file: str, lines):
        from harness.runner.stages import STAGE_CONFIGS, _import_stage_runners

        _import_stage_runners()
        self.grid, self.file, self.lines, self.configs = grid, file, lines, STAGE_CONFIGS
        self.stages: dict[str, StageNode] = {}

    def add(self, kind: str, name: str, raw: dict, parent: str | None, point: Point, stage: str) -> str:
        raw = copy.deepcopy(raw)
        if parent is not None and kind != "eval":
            raw.setdefault("model", {})
            raw["model"] = {**(raw["model"] if isinstance(raw["model"], dict) else {}), "path": f"stage:{parent}"}
        if kind == "eval":
            from harness.config.grid import EvalStageSpec
            cls = EvalStageSpec
        else:
            cls = self.configs[kind]
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as err:
            raise _config_error(err, self.file, self.lines, stage, point) from None
        self.check_names(cfg, stage, point)
        config = cfg.model_dump(mode="json")
        if kind == "eval":
            config["model"] = f"stage:{parent}"
        from harness.data.sources import specs_fingerprint

        data_fp = specs_fingerprint(getattr(cfg, "data", None) or [], base=self.file)
        key = stage_key(kind, config, [parent] if parent else [], data_fp)
        node = self.stages.setdefault(key, StageNode(key, kind, name, config, [parent] if parent else []))
        node.trials.append(point.index)
        return key

    def check_names(self, cfg, stage: str, point: Point) -> None:
        """Benchmark and judge names are checked at plan time (bad-input tests): a typo must not fail every
        trial after its training."""
        from harness.evals.suite import parse_suite
        from harness.judges import judge_config

        checks = [("suite", parse_suite)] if stage == "eval" else []
        if isinstance(getattr(cfg, "judge", None), str):
            checks.append(("judge", judge_config))
        for field_name, check in checks:
            try:
                check(getattr(cfg, field_name))
            except ConfigError as err:
                axis = f"{stage}.{field_name}"
                path = ("grid", axis) if axis in point.axes else ("pipeline", stage, field_name)
                key = axis if axis in point.axes else f"pipeline.{axis}"
                raise ConfigError(err.reason, file=self.file, line=line_of(self.lines, path), key=key) from None

    def chain(self, point: Point) -> list[str]:
        pipeline, method, online = _stage_configs(self.grid, point)
        keys: list[str] = []
        model: str | None = None
        evals = self.grid.pipeline.get("eval") is not None
        eval_raw = pipeline.get("eval", {})
        after = set(eval_raw.get("after", ["final"])) if evals else set()
        if "sft" in pipeline:
            if "from" in pipeline["sft"]:
                model = None  # an existing model: later stages name it in their own `model`
            else:
                model = self.add("sft", "sft", pipeline["sft"], None, point, "sft")
                keys.append(model)
                if "sft" in after:
                    keys.append(self.add("eval", "eval:sft", eval_raw, model, point, "eval"))
        if method != "none":
            if method not in pipeline:
                raise ConfigError(f"method {method!r} needs a pipeline.{method} section", file=self.file,
                                  line=line_of(self.lines, ("method",)), key="method")
            kind = "sft" if method == "sft_continue" else method
            model = self.add(kind, "preference", pipeline[method], model, point, method)
            keys.append(model)
            if "preference" in after:
                keys.append(self.add("eval", "eval:preference", eval_raw, model, point, "eval"))
        if online and "online_dpo" in pipeline:
            model = self.add("online_dpo", "online_dpo", pipeline["online_dpo"], model, point, "online_dpo")
            keys.append(model)
        if evals and "final" in after and model is not None:
            keys.append(self.add("eval", "eval:final", eval_raw, model, point, "eval"))
        return keys


def build_plan(grid: GridConfig, file: str = "<grid>", lines=None) -> Plan:
    lines = lines or {}
    _check_axes(grid, file, lines)
    if grid.search is not None:  # search beyond grids: points are sampled while the study runs
        from harness.grid.search import build_search_plan
        return build_search_plan(grid, file, lines)
    points = expand_points(grid)
    builder = _Builder(grid, file, lines)
    chains = [builder.chain(p) for p in points]
    return Plan(grid, file, points, builder.stages, chains)


def load_plan(path: str | Path, overrides=()) -> Plan:
    data, lines = read_yaml(path)
    grid = validate(GridConfig, data, file=str(path), lines=lines, overrides=overrides)
    return build_plan(grid, str(path), lines)


def add_point(plan: Plan, axes: dict[str, Any]) -> Point:
    """Append one point (e.g. sampled by a search) with its stage chain; stages that earlier points
    already have (the same keys) are shared, not added again."""
    point = Point(len(plan.points), axes)
    builder = _Builder(plan.grid, plan.file, {})
    builder.stages = plan.stages
    plan.chains.append(builder.chain(point))
    plan.points.append(point)
    return point


def describe(plan: Plan) -> str:
    """The stage graph as text: distinct stages per kind and which trials share them."""
    if plan.grid.search is not None:
        from harness.grid.search import describe_search
        return describe_search(plan)
    out = [f"study {plan.study}: {len(plan.points)} trials, "
           + ", ".join(f"{n} distinct {k}" for k, n in sorted(plan.counts().items()))]
    for point, chain in zip(plan.points, plan.chains):
        axes = ", ".join(f"{k}={v}" for k, v in point.axes.items())
        out.append(f"  trial {point.index}: {axes}")
        for key in chain:
            node = plan.stages[key]
            shared = f"  shared with trials {node.trials}" if len(node.trials) > 1 else ""
            out.append(f"      {node.name:<16} {node.dirname}{shared}")
    return "\n".join(out)
