"""Handing the C heap's free memory back to the system once a dataset is built.

Building dataset dicts and serialising them (detectron2's ``DatasetFromList`` pickles each dict
into its own small buffer before joining them) leaves the process's heap fragmented: at COCO
size (118k images) glibc keeps 25-40 MiB that nothing uses, and without this a training process
holds them for its whole run. ``malloc_trim(0)`` returns them; it exists in glibc only.
"""

import ctypes
import functools
import gc
import logging
from typing import Callable, Optional

__all__ = ["release_free_heap"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's malloc_trim from the symbols this process has loaded; None elsewhere (musl,
    macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # no such symbol, or no process handle
        logger.info("libc has no malloc_trim: free heap memory stays with the process.")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """
    Collect garbage, then return the heap's free pages to the system (glibc ``malloc_trim``).
    Called by the data loader builders after the dataset is serialised, before any worker is
    forked.

    Returns:
        whether the allocator could be asked (False where libc has no malloc_trim: then only
        the garbage is collected).
    """
    gc.collect()
    trim = _find_malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
