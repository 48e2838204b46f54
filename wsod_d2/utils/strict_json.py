"""Strict JSON (RFC 8259) for the files wsod_d2 writes: metrics hold NaN (the AP or CorLoc of a
class with no image) and Python's json writes it as a bare ``NaN`` that strict parsers reject.

Encoding: NaN -> ``null``; +/-infinity -> the strings ``"Infinity"`` / ``"-Infinity"`` (which
``float()`` reads back). Every key is kept, so a reader sees which metric was undefined.
"""
import json
import math
from typing import Any

from detectron2.utils.events import JSONWriter

INFINITY = "Infinity"


def strict(obj: Any) -> Any:
    """``obj`` (nested dicts, lists, tuples, numbers; numpy / torch scalars through ``item()``)
    with its non-finite floats encoded as above."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else (INFINITY if obj > 0 else "-" + INFINITY)
    return obj


def dumps_strict(obj: Any, **kwargs) -> str:
    """``json.dumps`` of ``strict(obj)``; raises if a non-finite float is left anywhere."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def dump_strict(obj: Any, path: str, **kwargs) -> None:
    with open(path, "w") as f:
        f.write(dumps_strict(obj, **kwargs))


def metric_value(value) -> float:
    """A metric read back from a strict file: ``null`` -> NaN, "Infinity" strings -> inf."""
    return float("nan") if value is None else float(value)


class _StrictLines:
    """A text file whose ``write`` re-encodes each JSON line strictly (JSONWriter writes lines
    of ``json.dumps``; re-encoding them keeps detectron2's bookkeeping of what was written)."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, text: str) -> None:
        lines = [dumps_strict(json.loads(line), sort_keys=True) for line in text.splitlines()]
        self._handle.write("".join(line + "\n" for line in lines))

    def __getattr__(self, name):
        return getattr(self._handle, name)


class StrictJSONWriter(JSONWriter):
    """detectron2's JSONWriter (``metrics.json``, one JSON object per line) in strict JSON."""

    def __init__(self, json_file: str, window_size: int = 20):
        super().__init__(json_file, window_size)
        self._file_handle = _StrictLines(self._file_handle)
