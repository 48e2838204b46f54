"""Dataset dicts attached to a proposal store: the pickle's checks and errors, references read
by the mappers (also from two DataLoader workers at once), the tiny dataset mapped and trained
with a store as with its pickle."""

import random

import numpy as np
import pytest
import torch
from detectron2.data import DatasetFromList

from wsod_d2.data.proposals.attach import attach_proposals
from wsod_d2.data.proposals.converters import convert_proposals
from wsod_d2.data.proposals.io import load_proposal_file, save_proposal_file
from wsod_d2.data.proposals.references import STORE_KEY, image_proposals
from wsod_d2.data.proposals.store_writer import write_proposal_store
from wsod_d2.data.wsod.build import build_wsod_train_loader, dataset_dicts_from_config
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
from wsod_d2.engine import WSODTrainer
from wsod_d2.testing import image_record, tiny_cfg

W, H = 100, 50


def both_formats(tmp_path, ids, boxes, logits=None):
    """(pickle path, store path) holding the same proposals."""
    pkl, store = str(tmp_path / "props.pkl"), str(tmp_path / "props.store")
    save_proposal_file(pkl, ids, [np.asarray(b, np.float32) for b in boxes], logits)
    convert_proposals("pickle", pkl, store, output_format="store")
    return pkl, store


def records(ids):
    return [image_record(i, width=W, height=H) for i in ids]


def error_of(proposal_file, dicts, **kw):
    with pytest.raises(ValueError) as e:
        attach_proposals(dicts, proposal_file, **kw)
    return str(e.value)


def test_store_dicts_carry_a_reference_and_map_like_the_pickle(tmp_path):
    boxes = [[[-0.5, 0, 100.8, 50], [10, 10, 10, 20], [1, 2, 3, 4]], [[0, 0, 5, 5]]]
    logits = [np.float32([0.0, 2.0, 0.0]), np.float32([1.0])]
    pkl, store = both_formats(tmp_path, ["000005", 7], boxes, logits)
    dicts = records([7, "000005"])
    from_pickle = attach_proposals(dicts, pkl)
    from_store = attach_proposals(dicts, store)
    assert all(STORE_KEY not in d for d in dicts)  # inputs untouched
    for p, s in zip(from_pickle, from_store):
        assert "proposal_boxes" not in s and len(s[STORE_KEY]) == 3 and s[STORE_KEY][2] in (0, 1)
        for a, b in zip(image_proposals(p), image_proposals(s)):
            assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
    # clipped and sorted by decreasing logit, as the pickle path attaches them
    assert image_proposals(from_store[1])[0].tolist() == [
        [10, 10, 10, 20],
        [0, 0, 100, 50],
        [1, 2, 3, 4],
    ]


def test_missing_ids_name_the_store_and_the_ids(tmp_path):
    _, store = both_formats(tmp_path, ["000005"], [[[0, 0, 5, 5]]])
    msg = error_of(store, records(["000005", "000007", "000009"]))
    assert f"proposal store {store}: image id '000007'" in msg
    assert "2 of 3 dataset images are missing: '000007', '000009'" in msg
    assert "ids are '000005'" in msg


def test_integer_ids_point_at_the_wetectron_converter(tmp_path):
    _, store = both_formats(tmp_path, [5, 7], [[[0, 0, 5, 5]], [[0, 0, 5, 5]]])
    msg = error_of(store, records(["000005", "000007"]))
    assert "stores the ids as integers" in msg and "--output-format store" in msg


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 4)),
        [[0, 0, 5, 5], [1, np.nan, 3, 4]],
        [[0, 0, 5, 5], [8, 1, 3, 4]],
        [[0, 0, 5, 5], [4, 60, 20, 90]],
        [[0, 0, 101.5, 50]],
        [[-1.5, 0, 10, 10]],
    ],
    ids=["empty", "nan", "malformed", "swapped", "right", "left"],
)
def test_bad_boxes_fail_with_the_pickle_message(tmp_path, bad):
    ok = [[0, 0, 5, 5]]
    pkl, store = both_formats(tmp_path, ["a", "b", "c"], [ok, bad, bad])
    dicts = records(["a", "b", "c"])
    expected = error_of(pkl, dicts).replace(f"proposal file {pkl}", f"proposal store {store}")
    assert error_of(store, dicts) == expected and "'b'" in expected


def test_bounds_tolerance_at_the_limit_agrees_with_the_pickle(tmp_path):
    pkl, store = both_formats(tmp_path, ["a"], [[[0, 0, 100.1, 50.1]]])
    for tol in (0.0, 0.1, 0.2):
        try:
            expected = [
                image_proposals(d)
                for d in attach_proposals(records(["a"]), pkl, bounds_tolerance=tol)
            ]
        except ValueError:
            error_of(store, records(["a"]), bounds_tolerance=tol)
            continue
        got = [
            image_proposals(d)
            for d in attach_proposals(records(["a"]), store, bounds_tolerance=tol)
        ]
        assert got[0][0].tobytes() == expected[0][0].tobytes()


def test_convention_check_reads_the_store_extents(tmp_path):
    # boxes made for images half the size: they never reach the right or bottom half
    ids = [f"{i:06d}" for i in range(10)]
    boxes = [[[0, 0, 40, 20], [5, 5, 50, 25]] for _ in ids]
    pkl, store = both_formats(tmp_path, ids, boxes)
    dicts = records(ids)
    expected = error_of(pkl, dicts).replace(f"proposal file {pkl}", f"proposal store {store}")
    expected = expected.replace(f"('{pkl}',)", f"('{store}',)")
    assert error_of(store, dicts) == expected and "downscaled by ~0.50" in expected
    assert len(attach_proposals(dicts, store, accept_conventions=True)) == 10


class _ReadProposals(torch.utils.data.Dataset):
    """Index -> (image_id, boxes, logits, worker pid), through the serialised dataset dicts as
    a training loader holds them."""

    def __init__(self, dicts):
        self.dataset = DatasetFromList(dicts, copy=False)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        record = self.dataset[i]
        boxes, logits = image_proposals(record)
        info = torch.utils.data.get_worker_info()
        return record["image_id"], boxes, logits, info.id if info else -1


def test_two_dataloader_workers_read_the_same_store(tmp_path):
    ids = list(range(40))
    boxes, logits = [], []
    rng = np.random.default_rng(0)
    for i in ids:
        xy = rng.random((5 + i, 2, 2)).astype(np.float32) * np.float32([W, H])
        boxes.append(np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1))
        logits.append(rng.standard_normal(5 + i).astype(np.float32))
    pkl, store = both_formats(tmp_path, ids, boxes, logits)
    dicts = records(ids)
    expected = {d["image_id"]: image_proposals(d) for d in attach_proposals(dicts, pkl)}
    loader = torch.utils.data.DataLoader(
        _ReadProposals(attach_proposals(dicts, store)),
        batch_size=None,
        num_workers=2,
        sampler=list(reversed(range(len(ids)))) * 2,
    )
    seen, workers = 0, set()
    for image_id, got_boxes, got_logits, worker in loader:
        assert got_boxes.numpy().tobytes() == expected[image_id][0].tobytes()
        assert got_logits.numpy().tobytes() == expected[image_id][1].tobytes()
        seen, workers = seen + 1, workers | {worker}
    assert seen == 2 * len(ids) and workers == {0, 1}


@pytest.fixture(scope="module")
def tiny_both(tiny_voc, tmp_path_factory):
    """(tiny cfg with the pickles, same with stores converted from them)."""
    out = tmp_path_factory.mktemp("store_tiny")
    cfg = tiny_cfg(tiny_voc, str(out / "pickle"))
    for split in ("trainval", "test"):  # generates the pickles on first use
        dataset_dicts_from_config(cfg, [tiny_voc[1][split]], [tiny_voc[2][split]], False)
    stores = {}
    for split, pkl in tiny_voc[2].items():
        stores[split] = str(out / f"ss_{split}.store")
        convert_proposals("pickle", pkl, stores[split], output_format="store")
    store_cfg = tiny_cfg((tiny_voc[0], tiny_voc[1], stores), str(out / "store"))
    store_cfg.DATASETS.TEST = (tiny_voc[1]["test"],)
    store_cfg.DATASETS.PROPOSAL_FILES_TEST = (stores["test"],)
    return cfg, store_cfg


@pytest.mark.parametrize("views", [0, 2])
def test_tiny_dataset_maps_the_same_proposals_from_store_and_pickle(tiny_both, views):
    outputs = []
    for c in (c.clone() for c in tiny_both):
        c.INPUT.VIEWS.NUM_SCALES = views
        dicts = dataset_dicts_from_config(
            c, c.DATASETS.TRAIN, c.DATASETS.PROPOSAL_FILES_TRAIN, True
        )
        mapper = MultiViewWSODDatasetMapper(c) if views else WSODDatasetMapper(c, True)
        random.seed(0)
        np.random.seed(0)
        outputs.append([mapper(d) for d in DatasetFromList(dicts, copy=False)])
    for p, s in zip(*outputs):
        assert p["image_id"] == s["image_id"] and STORE_KEY not in s
        for pv, sv in zip(p.get("views", [p]), s.get("views", [s])):
            assert torch.equal(pv["image"], sv["image"])
            assert torch.equal(
                pv["proposals"].proposal_boxes.tensor, sv["proposals"].proposal_boxes.tensor
            )
            assert torch.equal(pv["proposals"].objectness_logits, sv["proposals"].objectness_logits)


def test_missing_ids_fail_when_the_train_loader_is_built(tiny_both, tmp_path):
    """Before any worker starts (the loader starts at its first batch), naming the store."""
    cfg = tiny_both[1].clone()
    data = load_proposal_file(tiny_both[0].DATASETS.PROPOSAL_FILES_TRAIN[0])
    store = str(tmp_path / "two_missing.store")
    rows = zip(data["ids"], data["boxes"], data["objectness_logits"])
    write_proposal_store(store, [row for i, row in enumerate(rows) if i not in (3, 5)])
    cfg.DATASETS.PROPOSAL_FILES_TRAIN = (store,)
    with pytest.raises(ValueError) as e:
        build_wsod_train_loader(cfg)
    missing = f"{data['ids'][3]!r}, {data['ids'][5]!r}"
    assert f"proposal store {store}: image id {data['ids'][3]!r}" in str(e.value)
    assert f"2 of {len(data['ids'])} dataset images are missing: {missing}" in str(e.value)
    build_wsod_train_loader(tiny_both[1])  # the full store passes


def test_tiny_training_with_stores(tiny_both):
    store_cfg = tiny_both[1].clone()
    store_cfg.SOLVER.MAX_ITER = 2
    store_cfg.DATALOADER.NUM_WORKERS = 1
    trainer = WSODTrainer(store_cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == 2 and np.isfinite(trainer.storage.history("total_loss").latest())
