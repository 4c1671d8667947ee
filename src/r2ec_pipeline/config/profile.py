"""A profile's parameters as Kedro loads them, without Kedro: for machines that run the node functions alone.

``conf/base/parameters*.yml`` deep-merged with ``conf/<env>/parameters*.yml`` (the project's soft merge),
``${globals:key}`` resolved from the merged ``globals.yml`` files and ``${env:NAME,default}`` from the
environment, then runtime overrides (``--params``-style dotted keys). ``tests/test_profiles.py`` checks
the result equals Kedro's ``OmegaConfigLoader`` for every profile, so there is one source of settings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\$\{(globals|env):([^},]+)(?:,([^}]*))?\}")


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _read(folder: Path, pattern: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(folder.glob(pattern)):
        merged = _deep_merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def _resolve(value: Any, globals_: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, globals_) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, globals_) for item in value]
    if not isinstance(value, str):
        return value
    whole = _REFERENCE.fullmatch(value)

    def lookup(match: re.Match[str]) -> Any:
        kind, name, default = match.groups()
        if kind == "env":
            return os.environ.get(name, default)
        if name not in globals_:
            raise KeyError(f"${{globals:{name}}} is not in globals.yml")
        return globals_[name]

    if whole:  # a whole-value reference keeps the referenced value's type
        return lookup(whole)
    return _REFERENCE.sub(lambda match: str(lookup(match)), value)


def nested_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}``, as ``kedro run --params a.b=1`` passes them."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def load_parameters(
    conf: str | Path, env: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every parameter block of ``conf/base`` + ``conf/<env>``, references resolved, ``overrides`` (dotted keys
    or nested blocks) applied last, as ``kedro run --env <env> --params ...`` sees them."""
    root = Path(conf)
    if env is not None and not (root / env).is_dir():
        raise FileNotFoundError(f"no profile {env!r} in {root} (its folder is missing)")
    folders = [root / "base"] + ([root / env] if env else [])
    globals_: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for folder in folders:
        globals_ = _deep_merge(globals_, _read(folder, "globals*.yml"))
        parameters = _deep_merge(parameters, _read(folder, "parameters*.yml"))
    parameters = _resolve(parameters, globals_)
    return _deep_merge(parameters, nested_keys(overrides or {}))
