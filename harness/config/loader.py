"""YAML loading with `file:line: key: message` errors, and `key=value` overrides.

YAML is read with `yaml.safe_load` only. To point errors at a line, the file is also
composed into a node tree (same safe loader) and every key path is mapped to its line.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
KeyPath = tuple[Any, ...]


class ConfigError(ValueError):
    """A bad config or data input. `str(err)` is one line: `file:line: key: what is wrong`."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str | None = None):
        self.file, self.line, self.key, self.reason = file, line, key, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        text = " ".join(str(message).split())  # always one line
        super().__init__(": ".join(p for p in (where, key, text) if p))


def dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, prefix: KeyPath = (), out: dict | None = None) -> dict[KeyPath, int]:
    out = {} if out is None else out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            out[path] = key_node.start_mark.line + 1
            _line_map(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _line_map(item, prefix + (i,), out)
    return out


def read_yaml(path: str | Path) -> tuple[Any, dict[KeyPath, int]]:
    """Return (data, {key path: line}). Raises ConfigError on missing files and syntax errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1  # the line holding the bad byte
        raise ConfigError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=str(path), line=line) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"YAML syntax error: {problem}", file=str(path), line=line) from None
    if data is None:
        raise ConfigError("empty YAML file", file=str(path))
    return data, (_line_map(node) if node is not None else {})


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """Line of the longest prefix of `path` that the file spells out."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])]
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value", file="<command line>")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key", file="<command line>")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _child(node: Any, key: str, text: str, create: bool) -> Any:
    if isinstance(node, list):
        if not key.isdigit() or int(key) >= len(node):
            raise ConfigError(f"override {text!r}: no list item {key!r}", file="<command line>")
        return node[int(key)]
    if not isinstance(node, dict):
        raise ConfigError(f"override {text!r}: {key!r} is inside a value that is not a mapping or list", file="<command line>")
    if create and node.get(key) is None:
        node[key] = {}
    return node[key]


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """`a.b.c=value` sets data['a']['b']['c']; numeric parts index lists (`data.0.size=100`).
    The value is parsed as YAML (`[1, 2]`, `0.1`, `null`)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            node = _child(node, key, text, create=True)
        if isinstance(node, list):
            _child(node, keys[-1], text, create=False)
            node[int(keys[-1])] = value
        elif isinstance(node, dict):
            node[keys[-1]] = value
        else:
            raise ConfigError(f"override {text!r}: parent of {keys[-1]!r} is not a mapping", file="<command line>")
    return data


def _describe(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"]


def validation_error(err: ValidationError, file: str, lines: dict[KeyPath, int], overrides: dict[str, Any] | None = None) -> ConfigError:
    """First error of a pydantic ValidationError as a one-line ConfigError (plus a count of the others)."""
    errors = err.errors()
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = dotted(loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if overrides and any(key == k or key.startswith(k + ".") for k in overrides):
        return ConfigError(_describe(first) + more, file="<command line>", key=key)
    return ConfigError(_describe(first) + more, file=file, line=line_of(lines, loc), key=key or None)


def validate(model_cls: type[M], data: Any, *, file: str = "<config>", lines: dict[KeyPath, int] | None = None,
             overrides: Iterable[str] = ()) -> M:
    overrides = list(overrides)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", file=file, line=1)
    data = apply_overrides(data, overrides)
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        names = {o.split("=", 1)[0]: None for o in overrides}
        raise validation_error(err, file, lines or {}, names) from None


def load_config(model_cls: type[M], path: str | Path, overrides: Iterable[str] = ()) -> M:
    """Load YAML at `path` into `model_cls`, applying `key=value` overrides first."""
    data, lines = read_yaml(path)
    return validate(model_cls, data, file=str(path), lines=lines, overrides=overrides)
