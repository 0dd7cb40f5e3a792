"""YAML files with ``extends:`` inheritance (model configs, and data configs as a hepnn extension)."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Callable
from typing import Any

import yaml


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_with_extends(
    path: str | pathlib.Path,
    what: str,
    error: Callable[[str], Exception],
    adjust: Callable[[pathlib.Path, dict[str, Any]], None] | None = None,
    _chain: tuple[pathlib.Path, ...] = (),
) -> dict[str, Any]:
    """Read a YAML mapping, resolving ``extends`` (a path relative to the file, ``.yaml`` optional).

    Parameters
    ----------
    what
        What the file is (``"model config"``), for error messages.
    error
        Builds the exception raised for an unreadable file, a non-mapping or a broken chain.
    adjust
        Called with ``(path, raw)`` on every file of the chain before merging (e.g. to make
        relative paths absolute against the file that declares them).
    """
    path = pathlib.Path(path).resolve()
    if path in _chain:
        raise error(f"{path}: circular 'extends' chain: {' -> '.join(str(p) for p in _chain + (path,))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: cannot read {what}: {err}") from err
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} must be a mapping")
    if adjust is not None:
        adjust(path, raw)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    parent_path = path.parent / (parent if str(parent).endswith((".yaml", ".yml")) else f"{parent}.yaml")
    if not parent_path.exists():
        raise error(f"{path}: extends '{parent}' but {parent_path} does not exist")
    return deep_merge(load_with_extends(parent_path, what, error, adjust, _chain + (path,)), raw)
