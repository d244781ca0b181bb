"""Small helpers shared by the index modules: piecewise-linear breakpoint tables and
"which of several sub-indices is the largest" over numpy arrays.

Both AQI standards (US EPA and China HJ 633, both editions) interpolate linearly inside a row of a
breakpoint table and report the maximum sub-index with the pollutant(s) responsible; the two
differ in rounding and in how rows meet, which stays in their own modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
StrArray = NDArray[np.str_]


def as_float(x: ArrayLike | None) -> FloatArray:
    """``x`` as a float64 array; None becomes NaN (a missing input, not zero)."""
    if x is None:
        return np.asarray(np.nan, dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def broadcast_all(arrays: Mapping[str, ArrayLike]) -> dict[str, FloatArray]:
    """The arrays of ``arrays`` as float64, broadcast to one common shape."""
    names = list(arrays)
    values = np.broadcast_arrays(*(as_float(arrays[n]) for n in names))
    return {n: np.array(v, dtype=np.float64) for n, v in zip(names, values)}


def nanmax_of(sub_indices: Mapping[str, ArrayLike]) -> FloatArray:
    """Element-wise maximum over the mapping's arrays, ignoring NaN; NaN where all are NaN."""
    if not sub_indices:
        raise ValueError("no sub-indices given")
    stacked = np.stack(list(broadcast_all(sub_indices).values()))
    out = np.full(stacked.shape[1:], np.nan)
    any_valid = np.isfinite(stacked).any(axis=0)
    if any_valid.any():
        out[any_valid] = np.nanmax(stacked[:, any_valid], axis=0)
    return out


def names_where(sub_indices: Mapping[str, ArrayLike], target: FloatArray) -> StrArray:
    """';'-joined names whose sub-index equals ``target`` (element-wise), '' where none does."""
    b = broadcast_all(sub_indices)
    shape = np.broadcast_shapes(target.shape, *(v.shape for v in b.values()))
    out = np.full(shape, "", dtype=object)
    for name, v in b.items():
        hit = np.isfinite(target) & (np.broadcast_to(v, shape) == target)
        joined = np.where(out == "", name, out + ";" + name)
        out = np.where(hit, joined, out)
    return out.astype(str)


def pick(levels: FloatArray, labels: tuple[str, ...]) -> StrArray:
    """labels[level] element-wise, '' where the level is NaN (level is a float 0..n-1)."""
    table = np.array(("",) + labels)
    idx = np.where(np.isfinite(levels), levels + 1, 0).astype(np.int64)
    return np.asarray(table[idx])


@dataclass(frozen=True)
class AqiReport:
    """Everything a dashboard or rule needs about one AQI evaluation, element-wise."""

    aqi: FloatArray
    primary: StrArray
    category: StrArray
    color: StrArray
    sub_indices: dict[str, FloatArray] = field(default_factory=dict)
