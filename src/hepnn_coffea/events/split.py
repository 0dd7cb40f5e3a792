"""Deterministic, event-wise train/val/test split from the event ID (run, luminosityBlock, event).

Every event gets a pseudo-random number in [0, 1) from a splitmix64-style integer hash of
``(run, luminosityBlock, event, seed)`` and goes to the split whose cumulative-fraction
interval holds it. The assignment depends on nothing else (not on the file, chunk, order
or process), so all jets of one event always land in the same split, a re-run reproduces
it exactly, and another ``seed`` gives an independent split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SPLITS", "event_split", "event_uniform", "validate_fractions"]

#: Split names; :func:`event_split` returns indices into this tuple (0 = train, 1 = val, 2 = test).
SPLITS: tuple[str, str, str] = ("train", "val", "test")

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on ``uint64`` (multiplications wrap modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def _as_uint64(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    return array.astype(np.uint64)


def event_uniform(run: ArrayLike, luminosityBlock: ArrayLike, event: ArrayLike, seed: int = 0) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per event, hashed from its ID and ``seed``.

    Parameters
    ----------
    run, luminosityBlock, event : array_like of int
        The event ID columns (broadcast against each other; NumPy or flat awkward arrays).
    seed : int, optional
        Hash seed; different seeds give independent numbers.

    Returns
    -------
    np.ndarray
        ``float64`` values in [0, 1), 53 random bits each.
    """
    with np.errstate(over="ignore"):
        state = np.full(
            np.broadcast(np.asarray(run), np.asarray(luminosityBlock), np.asarray(event)).shape,
            _mix64(np.uint64(int(seed) & _MASK64)),
            dtype=np.uint64,
        )
        for name, column in (("run", run), ("luminosityBlock", luminosityBlock), ("event", event)):
            state = _mix64(state ^ _as_uint64(column, name))
    return (state >> np.uint64(11)).astype(np.float64) * 2.0**-53


def validate_fractions(fractions: Mapping[str, float]) -> np.ndarray:
    """The fractions as an array ordered like :data:`SPLITS` (missing splits get 0).

    Raises
    ------
    ValueError
        For a key that is not a split name, a negative or non-finite fraction (both naming the
        key), or fractions that do not sum to 1 within 1e-9.
    """
    ordered = np.zeros(len(SPLITS))
    for key, value in fractions.items():
        if key not in SPLITS:
            raise ValueError(f"unknown split {key!r} in fractions; expected keys among {SPLITS}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"fraction of split {key!r} must be finite and non-negative, got {value}")
        ordered[SPLITS.index(key)] = value
    total = float(ordered.sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {total!r} from {dict(fractions)}")
    return ordered


def event_split(
    run: ArrayLike,
    luminosityBlock: ArrayLike,
    event: ArrayLike,
    fractions: Mapping[str, float],
    seed: int = 0,
) -> np.ndarray:
    """The split index of every event: 0 = train, 1 = val, 2 = test (see :data:`SPLITS`).

    Parameters
    ----------
    run, luminosityBlock, event : array_like of int
        The event ID columns, one entry per event (or per jet, broadcast from the event:
        the result depends only on the ID, so rows of one event always agree).
    fractions : Mapping[str, float]
        Fraction per split name, e.g. ``{"train": 0.6, "val": 0.2, "test": 0.2}``; keys among
        :data:`SPLITS` (missing ones get 0), non-negative, summing to 1 within 1e-9.
    seed : int, optional
        Hash seed, 0 by default.

    Returns
    -------
    np.ndarray
        ``int8`` split indices, the broadcast shape of the ID columns.

    Raises
    ------
    ValueError
        If ``fractions`` is invalid (the message names the offending key).
    """
    ordered = validate_fractions(fractions)
    edges = np.cumsum(ordered)
    last_used = int(np.flatnonzero(ordered > 0)[-1])
    edges[last_used:] = 1.0  # rounding can leave the sum a hair below 1: the last used split takes the rest
    uniform = event_uniform(run, luminosityBlock, event, seed)
    return np.searchsorted(edges, uniform, side="right").astype(np.int8)
