"""Everything a run needs is checked when the trainer is built, before the first iteration: test
proposal files, test images, class counts, labels, the output dir. Each error names the key,
file or image and says what to do."""
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from wsod_d2.data.proposals.io import load_proposal_file, save_proposal_file
from wsod_d2.data.wsod.build import get_wsod_dataset_dicts
from wsod_d2.engine import WSODTrainer
from wsod_d2.testing import TINY_SPEC, tiny_cfg


def _variant(base, name, edit=lambda dicts: dicts, auto_proposals=True):
    """Register ``name``: the dicts of dataset ``base`` through ``edit``, same classes."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: edit(DatasetCatalog.get(base)))
    meta = MetadataCatalog.get(base).as_dict()
    meta.pop("name")
    if not auto_proposals:
        meta.pop("auto_proposals", None)
    MetadataCatalog.get(name).set(**meta)
    return name


@pytest.fixture(scope="module")
def tiny_proposals(tiny_voc):
    """The tiny dataset's proposal files, generated (as a first run would)."""
    _, names, proposals = tiny_voc
    for split in ("trainval", "test"):
        get_wsod_dataset_dicts(
            [names[split]],
            [proposals[split]],
            is_train=False,
            labels_from_difficult=False,
            bounds_tolerance=1.0,
            proposal_workers=1,
        )
    return proposals


def _test_opts(names, files):
    return ("DATASETS.TEST", tuple(names), "DATASETS.PROPOSAL_FILES_TEST", tuple(files))


def test_fewer_test_proposal_files_than_test_sets(tiny_voc, tiny_proposals, tmp_path):
    _, names, _ = tiny_voc
    opts = _test_opts([names["test"], names["trainval"]], [tiny_proposals["test"]])
    with pytest.raises(ValueError, match=r"DATASETS.PROPOSAL_FILES_TEST needs one file per"):
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path, *opts))


def test_test_proposals_of_the_wrong_split(tiny_voc, tiny_proposals, tmp_path):
    _, names, _ = tiny_voc
    opts = _test_opts([names["test"]], [tiny_proposals["trainval"]])
    with pytest.raises(
        ValueError, match=r"has no proposals in the file .*another dataset or split"
    ):
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path, *opts))


def test_missing_test_proposal_file(tiny_voc, tiny_proposals, tmp_path):
    _, names, _ = tiny_voc
    name = _variant(names["test"], "tinyvoc_test_no_auto", auto_proposals=False)
    missing = str(tmp_path / "none.pkl")
    with pytest.raises(FileNotFoundError, match=rf"{missing} for dataset {name} not found; make"):
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path / "out", *_test_opts([name], [missing])))


def test_corrupt_test_image(tiny_voc, tiny_proposals, tmp_path):
    _, names, _ = tiny_voc
    corrupt = str(tmp_path / "corrupt.jpg")
    with open(corrupt, "wb") as f:
        f.write(b"\xff\xd8\xff not a jpeg")

    def edit(dicts):
        return [dict(dicts[0], file_name=corrupt)] + dicts[1:]

    name = _variant(names["test"], "tinyvoc_test_corrupt", edit)
    first_id = DatasetCatalog.get(names["test"])[0]["image_id"]
    opts = _test_opts([name], [tiny_proposals["test"]])
    with pytest.raises(ValueError, match=rf"image id '{first_id}' \({corrupt}\): not a readable"):
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path / "out", *opts))


def test_no_training_image_has_a_label(tiny_voc, tiny_proposals, tmp_path):
    _, names, _ = tiny_voc
    name = _variant(
        names["trainval"],
        "tinyvoc_unlabeled",
        lambda dicts: [dict(d, annotations=[]) for d in dicts],
    )
    opts = (
        "DATASETS.TRAIN",
        (name,),
        "DATASETS.PROPOSAL_FILES_TRAIN",
        (tiny_proposals["trainval"],),
    )
    with pytest.raises(ValueError, match=r"no training image of \['tinyvoc_unlabeled'\] has an"):
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path, *opts))


def test_num_classes_smaller_than_the_dataset(tiny_voc, tiny_proposals, tmp_path):
    cfg = tiny_cfg(tiny_voc, tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", TINY_SPEC.num_classes - 1)
    with pytest.raises(
        ValueError,
        match=rf"NUM_CLASSES is 3 but dataset tinyvoc_test has 4 classes .*: set MODEL.ROI_HEADS"
        rf".NUM_CLASSES {TINY_SPEC.num_classes}",
    ):
        WSODTrainer(cfg)


def test_output_dir_not_writable(tiny_voc, tiny_proposals, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=rf"OUTPUT_DIR {blocker}/out is not a writable folder"):
        WSODTrainer(tiny_cfg(tiny_voc, str(blocker / "out")))


def test_int_ids_point_at_the_converter(tiny_voc, tiny_proposals, tmp_path):
    """A wetectron file keeps VOC ids as ints (5 for '000005')."""
    _, names, _ = tiny_voc
    data = load_proposal_file(tiny_proposals["test"])
    as_ints = str(tmp_path / "wetectron_ids.pkl")
    save_proposal_file(as_ints, [int(i) for i in data["ids"]], data["boxes"])
    with pytest.raises(ValueError) as info:
        WSODTrainer(tiny_cfg(tiny_voc, tmp_path, *_test_opts([names["test"]], [as_ints])))
    message = str(info.value)
    assert f"the file's {len(data['ids'])} ids are {int(data['ids'][0])!r}, " in message
    assert "stores the ids as integers (wetectron's convention" in message
    assert f"python tools/convert_proposals.py wetectron {as_ints}" in message
    assert os.path.isfile(tiny_proposals["test"])
