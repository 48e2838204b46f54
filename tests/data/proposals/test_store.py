"""The proposal store: round trip from pickles and converters, id lookup, atomic writes, and
tools/convert_proposals.py --output-format store."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from detectron2.structures import BoxMode

from wsod_d2.data.proposals.converters import convert_proposals, convert_selective_search_mat
from wsod_d2.data.proposals.io import load_proposal_file, save_proposal_file
from wsod_d2.data.proposals.store import ProposalStore, is_proposal_store, open_proposal_store
from wsod_d2.data.proposals.store_writer import ProposalStoreWriter, write_proposal_store
from wsod_d2.testing import REPO_ROOT


def random_proposals(ids, seed=0, max_boxes=30):
    """Per id, (N, 4) float32 XYXY boxes inside 100 x 50 and (N,) float32 logits; one image of
    three has no box."""
    rng = np.random.default_rng(seed)
    boxes, logits = [], []
    for i, _ in enumerate(ids):
        n = 0 if i % 3 == 1 else int(rng.integers(1, max_boxes))
        xy = rng.random((n, 2, 2)).astype(np.float32) * np.float32([100, 50])
        boxes.append(np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1))
        logits.append(rng.standard_normal(n).astype(np.float32))
    return boxes, logits


def pickle_then_store(tmp_path, ids, seed=0):
    """(pickle path, store path, boxes, logits): the same proposals in both formats, the store
    converted from the pickle."""
    boxes, logits = random_proposals(ids, seed)
    pkl = str(tmp_path / "props.pkl")
    save_proposal_file(pkl, ids, boxes, logits)
    store = str(tmp_path / "props.store")
    convert_proposals("pickle", pkl, store, output_format="store")
    return pkl, store, boxes, logits


@pytest.mark.parametrize(
    "ids", [["000005", "000007", "2008_000002", "a b"], [139, 285, 7, 1000000], ["12", 5, "x"]]
)
def test_pickle_to_store_round_trip_is_bit_exact(tmp_path, ids):
    pkl, path, boxes, logits = pickle_then_store(tmp_path, ids)
    assert is_proposal_store(path) and not is_proposal_store(pkl)
    store = ProposalStore(path)
    # ids come back as written: all ints stay ints; strs (and mixed sets) as str
    all_int = all(isinstance(i, int) for i in ids)
    assert store.ids() == (
        ids if all_int or all(isinstance(i, str) for i in ids) else list(map(str, ids))
    )
    assert store.id_type == ("int" if all_int else "str")
    data = load_proposal_file(pkl)
    for row in range(len(ids)):
        stored_boxes, stored_logits = store.read(row)
        assert stored_boxes.dtype == np.float32 and stored_logits.dtype == np.float32
        assert stored_boxes.shape == (len(boxes[row]), 4)
        assert stored_boxes.tobytes() == data["boxes"][row].tobytes() == boxes[row].tobytes()
        assert stored_logits.tobytes() == logits[row].tobytes()
    assert store.meta["num_boxes"] == sum(len(b) for b in boxes)


def test_id_lookup_matches_as_str_in_any_order(tmp_path):
    _, path, _, _ = pickle_then_store(tmp_path, [139, 285, 7, 1000000])
    store = ProposalStore(path)
    rows = store.rows_of([7, "285", 1000000, 139, "0139", 8, "7 "])
    assert rows.tolist() == [2, 1, 3, 0, -1, -1, -1]
    assert store.rows_of([]).tolist() == []
    _, str_path, _, _ = pickle_then_store(tmp_path / "s", ["000005", "5", "2008_000002"])
    assert ProposalStore(str_path).rows_of([5, "000005", "2008_000002"]).tolist() == [1, 0, 2]


def test_xywh_and_missing_logits_are_written_as_xyxy_and_zeros(tmp_path):
    path = str(tmp_path / "xywh.store")
    write_proposal_store(path, [(1, [[10, 5, 20, 30]], None)], bbox_mode=BoxMode.XYWH_ABS)
    boxes, logits = ProposalStore(path).read(0)
    assert boxes.tolist() == [[10, 5, 30, 35]] and logits.tolist() == [0.0]


def test_duplicate_ids_name_the_store_and_leave_nothing(tmp_path):
    path = str(tmp_path / "dup.store")
    one = [[0, 0, 5, 5]]
    with pytest.raises(ValueError, match=r"dup.store: image id '5' appears more than once"):
        write_proposal_store(path, [(5, one, None), ("000005", one, None), ("5", one, None)])
    assert os.listdir(tmp_path) == []


def test_writes_are_atomic(tmp_path):
    path = str(tmp_path / "p.store")
    write_proposal_store(path, [("a", [[0, 0, 1, 1]], [0.5])])
    first_uid = ProposalStore(path).uid
    # an error half way: the old store stays whole and no temporary directory is left
    with pytest.raises(RuntimeError, match="source broke"):
        with ProposalStoreWriter(path) as writer:
            writer.add("b", [[0, 0, 2, 2]])
            raise RuntimeError("source broke")
    assert os.listdir(tmp_path) == ["p.store"]
    assert ProposalStore(path).ids() == ["a"] and ProposalStore(path).uid == first_uid
    # a finished rewrite replaces it
    write_proposal_store(path, [("b", [[0, 0, 2, 2]], None), ("c", [[1, 1, 2, 2]], None)])
    assert ProposalStore(path).ids() == ["b", "c"] and ProposalStore(path).uid != first_uid
    assert os.listdir(tmp_path) == ["p.store"]
    # anything else at the path is not overwritten
    (tmp_path / "other").mkdir()
    with pytest.raises(FileExistsError, match="other exists and is not a proposal store"):
        write_proposal_store(str(tmp_path / "other"), [("a", [[0, 0, 1, 1]], None)])


def test_rewritten_store_is_detected_by_its_uid(tmp_path):
    path = str(tmp_path / "p.store")
    write_proposal_store(path, [("a", [[0, 0, 1, 1]], None)])
    old = open_proposal_store(path).uid
    write_proposal_store(path, [("b", [[0, 0, 2, 2]], None)])
    # this process keeps reading the old one it mapped (its files live on, unlinked)...
    assert open_proposal_store(path, old).read(0)[0].tolist() == [[0, 0, 1, 1]]
    # ...and reopens the path for a reference to the new one
    new = ProposalStore(path).uid
    assert open_proposal_store(path, new).read(0)[0].tolist() == [[0, 0, 2, 2]]
    # a process that mapped only the new one cannot serve the old reference: it says so
    with pytest.raises(RuntimeError, match=r"p.store was rewritten after the dataset dicts"):
        open_proposal_store(path, old)


def test_not_a_store_or_another_version(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no meta.json.*--output-format store"):
        ProposalStore(str(tmp_path / "empty"))
    path = str(tmp_path / "p.store")
    write_proposal_store(path, [("a", [[0, 0, 1, 1]], None)])
    meta = open(os.path.join(path, "meta.json")).read().replace('"version": 1', '"version": 9')
    open(os.path.join(path, "meta.json"), "w").write(meta)
    with pytest.raises(ValueError, match="version 9; this code reads"):
        ProposalStore(path)


def _two_image_mat(path):
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0] = np.array([[1, 1, 50, 100], [5, 10, 20, 30]], dtype=np.uint16)
    cells[0, 1] = np.array([[2, 3, 4, 5]], dtype=np.float64)
    images = np.empty((1, 2), dtype=object)
    images[0, 0], images[0, 1] = np.array(["000005"]), np.array(["000007"])
    scipy.io.savemat(path, {"boxes": cells, "images": images})
    return path


def test_convert_cli_writes_a_store(tmp_path):
    mat = _two_image_mat(str(tmp_path / "ss.mat"))
    out = str(tmp_path / "out" / "ss.store")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "convert_proposals.py"), "mat", mat]
    subprocess.run(cmd + ["--output", out, "--output-format", "store"], check=True, env=env)
    expected = convert_selective_search_mat(mat)
    store = ProposalStore(out)
    assert store.ids() == expected["ids"] == ["000005", "000007"]
    for row in range(2):
        boxes, logits = store.read(row)
        np.testing.assert_array_equal(boxes, expected["boxes"][row])
        np.testing.assert_array_equal(logits, expected["objectness_logits"][row])


def test_wetectron_to_store_equals_wetectron_to_pickle(tmp_path):
    wetectron = str(tmp_path / "SS-voc_2007_trainval-boxes.pkl")
    boxes = [np.array([[0, 0, 99, 49], [9, 4, 29, 19]], np.float32), np.array([[2, 1, 4, 3.0]])]
    with open(wetectron, "wb") as f:
        pickle.dump({"boxes": boxes, "scores": [np.zeros(2), np.zeros(1)], "indexes": [5, 7]}, f)
    ids = ["000007", "000005"]
    pkl, store = str(tmp_path / "w.pkl"), str(tmp_path / "w.store")
    convert_proposals("wetectron", wetectron, pkl, image_ids=ids)
    convert_proposals("wetectron", wetectron, store, output_format="store", image_ids=ids)
    data, stored = load_proposal_file(pkl), ProposalStore(store)
    assert data["ids"] == stored.ids() == ids
    for row in range(2):
        stored_boxes, stored_logits = stored.read(row)
        assert stored_boxes.tobytes() == data["boxes"][row].tobytes()
        assert stored_logits.tobytes() == data["objectness_logits"][row].tobytes()
    assert boxes[0].tolist()[0] == [0, 0, 99, 49]  # the source's arrays were not edited
