"""Generate a dataset folder once, safely, for generators such as the synthetic datasets.

A folder is complete when its marker file (JSON: everything that determines its content) exists.
Datasets are written into a temporary sibling whose marker comes last, then renamed into place,
so readers never see half a dataset; an flock on ``<root>.lock`` lets one process of several
generate while the others wait.
"""

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from wsod_d2.utils.locks import exclusive_lock

__all__ = ["DatasetRecipe", "ensure_generated", "generate"]

logger = logging.getLogger(__name__)


def _normalize_root(root: str) -> str:
    if not root:
        raise ValueError("root must be a non-empty path")
    return os.path.abspath(os.path.expanduser(root))


def _read_marker(root: str, marker_name: str, kind: str) -> Optional[Dict]:
    path = os.path.join(root, marker_name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt {kind} marker {path}: {e}; delete {root}") from e


@dataclass(frozen=True)
class DatasetRecipe:
    """How to make one dataset: ``write(folder)`` writes all but the marker into an empty folder;
    ``marker`` (JSON types) is stored last as ``marker_name``; ``kind`` and ``summary`` name the
    dataset in errors and the log."""

    marker: Dict
    write: Callable[[str], None]
    marker_name: str
    kind: str
    summary: str = ""


def _matches(root: str, recipe: DatasetRecipe) -> bool:
    """Whether root holds the recipe's dataset; raises if it holds another one."""
    found = _read_marker(root, recipe.marker_name, recipe.kind)
    if found is None:
        return False
    # Compare as stored: tuples in the wanted marker read back as lists.
    wanted = json.loads(json.dumps(recipe.marker))
    if found != wanted:
        differing = sorted(k for k in found.keys() | wanted.keys() if found.get(k) != wanted.get(k))
        raise ValueError(
            f"{recipe.kind} dataset at {root} was generated with a different spec (differing: "
            f"{', '.join(differing)}); found {found}, requested {wanted}; delete {root} or "
            "choose another root"
        )
    return True


def _generate_locked(root: str, recipe: DatasetRecipe) -> None:
    """Write into a temporary sibling and move it into place; the caller holds the lock."""
    parent, name = os.path.split(root)
    if os.path.lexists(root) and not os.path.isdir(root):
        raise ValueError(f"dataset root {root} exists and is not a directory")
    marker_name, kind = recipe.marker_name, recipe.kind
    if os.path.isdir(root) and os.listdir(root) and _read_marker(root, marker_name, kind) is None:
        raise ValueError(
            f"refusing to overwrite {root}: it is not empty and has no {marker_name}, so it is "
            f"not a {kind} dataset; choose another root or delete it"
        )
    # Leftovers of killed generations; only lock holders create these, so none is in use.
    for entry in os.listdir(parent):
        if entry.startswith(f"{name}.tmp-") or entry.startswith(f"{name}.old-"):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    start = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=parent)
    try:
        recipe.write(staging)
        with open(os.path.join(staging, marker_name), "w") as f:
            json.dump(recipe.marker, f, indent=2, sort_keys=True)
            f.write("\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # os.replace cannot overwrite a non-empty directory: move the old one aside first.
    old = None
    if os.path.lexists(root):
        old = tempfile.mkdtemp(prefix=f"{name}.old-", dir=parent)
        os.replace(root, os.path.join(old, name))
    os.replace(staging, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    details = f" ({recipe.summary})" if recipe.summary else ""
    logger.info(f"Generated {kind}{details} in {root} in {time.perf_counter() - start:.1f}s")


def generate(root: str, recipe: DatasetRecipe) -> None:
    """(Re)generate the recipe's dataset at root, replacing an earlier dataset of its kind."""
    root = _normalize_root(root)
    with exclusive_lock(root):
        _generate_locked(root, recipe)


def ensure_generated(root: str, recipe: DatasetRecipe) -> bool:
    """Generate the recipe's dataset at root unless root already holds it; safe to call from
    several processes at once. Returns True if this call generated it.

    Raises ValueError if root holds a dataset with another marker, or is a non-empty folder
    without one."""
    root = _normalize_root(root)
    # The marker appears only with a complete dataset (atomic rename), so no lock is needed here.
    if _matches(root, recipe):
        return False
    with exclusive_lock(root):
        if _matches(root, recipe):
            return False
        _generate_locked(root, recipe)
    return True
