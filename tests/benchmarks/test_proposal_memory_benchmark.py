"""The proposal-memory benchmark's guard ends a child that does not fit with a row, not an error
or the machine; its measurements run on a tiny set (the numbers are not checked, but for the
store's serialised dataset against the pickle's: the 118k run is tools/benchmark.py --only
data)."""

import sys
import time

import pytest

from wsod_d2.benchmarks.processes import memory, run_guarded
from wsod_d2.benchmarks.proposal_store import _child, ensure_pickle, ensure_synthetic_store

GUARD = {"min_available_gib": 0.0, "timeout_s": 60.0}


def python(code):
    """A child command running ``code`` (its JSON spec in sys.argv[1])."""
    return [sys.executable, "-c", code]


def test_memory_of_this_process():
    m = memory()
    assert 0 < m["uss"] <= m["rss"] <= m["peak_rss"]
    assert m["pss_anon"] > 0 and m["anon"] > 0


def test_children_print_their_results():
    code = "import json, sys; print(json.dumps({'x': json.loads(sys.argv[1])['x'] * 2}))"
    results = run_guarded(python(code), [{"x": 1}, {"x": 2}], max_data_gib=4.0, **GUARD)
    assert results == [{"x": 2}, {"x": 4}]


def test_a_child_over_its_memory_limit_is_a_row_and_stops_the_others():
    grow = "import numpy; numpy.ones(2**30, numpy.uint8)"  # 1 GiB, over the limit
    wait = "import time; time.sleep(60)"  # as a process waiting for the other at a barrier
    start = time.monotonic()
    results = run_guarded(
        [sys.executable, "-c", f"import sys; exec([{grow!r}, {wait!r}][int(sys.argv[1])])"],
        [0, 1],
        max_data_gib=0.5,
        **GUARD,
    )
    assert results[0] == {"killed": "out of memory: over the 0.5 GiB limit of a process"}
    assert results[1] == {"killed": "killed: another process of the run failed"}
    assert time.monotonic() - start < 30


def test_other_failures_are_errors():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_guarded(python("1 / 0"), [{}], max_data_gib=4.0, **GUARD)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """A synthetic set of 60 images x 500 boxes: its store, and the pickle of 40 of them."""
    store = ensure_synthetic_store(str(tmp_path_factory.mktemp("cache")), 60, 500, seed=0)
    return store, ensure_pickle(store, 40)


def measure(kind, path, mode="open", **spec):
    """One measurement as a benchmark child makes it, in this process (children cost seconds)."""
    spec.update(kind=kind, path=path, mode=mode, num_images=40, total_images=60, seed=0)
    return _child(spec)


def test_store_dataset_serialises_a_reference_per_image(tiny_set):
    store, pickle = tiny_set
    by_store, by_pickle = measure("store", store), measure("pickle", pickle)
    assert by_store["open_s"] is not None and by_pickle["open_s"] is None
    # 40 x 500 boxes: ~0.4 MiB of arrays in the pickle's dicts, none in the store's
    assert by_store["serialized_mib"] * 10 < by_pickle["serialized_mib"]


def test_loader_measures_each_worker(tiny_set, tmp_path):
    store, _ = tiny_set
    spec = {"workers": 2, "images_read": 20, "rank": 0, "world": 1, "barrier": str(tmp_path)}
    r = measure("store", store, mode="loader", **spec)
    assert r["images_read"] == 20 and r["boxes_read"] == 20 * 500
    assert len(r["workers"]) == 2 and r["main"]["uss"] > 0
