"""Typed, layered configuration: dataclass defaults -> YAML file -> dotted CLI overrides.

Every stage owns one top-level dataclass (``CodecConfig``, ``LLMConfig`` ...). ``load_config``
merges a YAML file and ``key.sub=value`` overrides into it and validates types, so a typo or a
wrong type fails at start-up with one line naming the key and where it came from, instead of an
hour into a run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from llmtts.errors import UserError
from llmtts.io import write_text_atomic

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config key is unknown, has the wrong type or an invalid value. The message names it."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{key}': {value!r} is not a {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{source}: key '{key}': {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}': expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, source, prefix=key + ".")
    if origin in (list, tuple):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{key}': expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        out = [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads "1e-3" (no dot) as a string; accept it for float keys.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: key '{key}': expected a string, got {value!r}")
    return value


_WARNED: set[str] = set()


def _renamed(cls: type, data: dict, source: str, prefix: str) -> dict:
    """Old key names a section still accepts (its ``RENAMED_KEYS = {old: new}``), with a deprecation line."""
    renamed = getattr(cls, "RENAMED_KEYS", {})
    if not any(k in data for k in renamed):
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old in data:
            if new in data:
                raise ConfigError(f"{source}: '{prefix}{old}' and '{prefix}{new}' are the same setting (old and new "
                                  f"name): keep '{prefix}{new}'")
            if f"{prefix}{old}" not in _WARNED:  # load_config builds a config several times: say it once
                _WARNED.add(f"{prefix}{old}")
                logging.getLogger(__name__).warning("%s: '%s%s' is deprecated, use '%s%s'", source, prefix, old,
                                                    prefix, new)
            data[new] = data.pop(old)
    return data


def from_dict(cls: type[T], data: dict, source: str, prefix: str = "") -> T:
    hints = get_type_hints(cls)
    data = _renamed(cls, data, source, prefix)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{k}' (valid keys of '{prefix.rstrip('.') or cls.__name__}': "
                f"{', '.join(sorted(names))})"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            # A nested section given partially keeps the *field's* defaults for the keys not given
            # (a stage may default trainer.max_steps differently from TrainerConfig), not the class's.
            if isinstance(value, dict) and dataclasses.is_dataclass(hints[f.name]):
                value = _renamed(hints[f.name], value, source, f"{prefix}{f.name}.")  # before the defaults join
                if f.default_factory is not dataclasses.MISSING:
                    value = _merge(json.loads(json.dumps(dataclasses.asdict(f.default_factory()))), value)
            kwargs[f.name] = _coerce(value, hints[f.name], prefix + f.name, source)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or cls.__name__}: {exc}") from None
    return obj


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command line: key '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["trainer.max_steps=10", "model.levels=[8,5]"]`` -> nested dict (values parsed as YAML)."""
    tree: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key, value)
    return tree


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from its defaults, then the YAML at ``path``, then dotted ``overrides``."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
        source = str(path)
    # Validate the file alone first so an error names the file, then the overrides.
    from_dict(cls, data, source)
    ov = parse_overrides(overrides)
    if ov:
        try:
            from_dict(cls, _merge(data, ov), "command line")
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
        data = _merge(data, ov)
    return from_dict(cls, data, source)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically) next to an output."""
    write_text_atomic(path, yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False))
