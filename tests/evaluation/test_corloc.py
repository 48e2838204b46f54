import math
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from wsod_d2.evaluation.corloc import CorLocEvaluator, top_box_per_class


def _ann(box, category_id, difficult=None, mode=BoxMode.XYXY_ABS):
    ann = {"bbox": box, "bbox_mode": mode, "category_id": category_id}
    if difficult is not None:
        ann["difficult"] = difficult
    return ann


@pytest.fixture
def register():
    names = []

    def _register(records, classes):
        name = f"test_corloc_{uuid.uuid4().hex}"
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).thing_classes = classes
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _output(boxes, scores, classes):
    instances = Instances((100, 100))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor(scores, dtype=torch.float32)
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return {"instances": instances}


# cat (0) and dog (1). Image "c" holds a difficult cat only.
RECORDS = [
    {"image_id": "a", "annotations": [_ann([0, 0, 10, 10], 0), _ann([50, 50, 90, 90], 1, False)]},
    {"image_id": "b", "annotations": [_ann([20, 20, 40, 40], 0, mode=BoxMode.XYWH_ABS)]},
    {"image_id": "c", "annotations": [_ann([0, 0, 40, 40], 1), _ann([70, 70, 90, 90], 0, True)]},
]
PREDICTIONS = {
    # cat: IoU exactly 0.5 -> hit; dog: top box misses, the lower correct box must not help
    "a": _output([[0, 0, 10, 20], [0, 0, 10, 10], [50, 50, 90, 90]], [0.9, 0.8, 0.3], [0, 1, 1]),
    # no cat prediction -> miss; dog is not in the image -> not counted
    "b": _output([[20, 20, 60, 60]], [0.7], [1]),
    # dog hit; cat hit on the difficult box
    "c": _output([[0, 0, 40, 40], [70, 70, 90, 90]], [0.6, 0.5], [1, 0]),
}


def _run(evaluator, predictions, batch=2):
    evaluator.reset()
    ids = list(predictions)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        evaluator.process([{"image_id": i} for i in chunk], [predictions[i] for i in chunk])
    return evaluator.evaluate()


def test_corloc_hand_computed_default_counts_difficult_only_images(register):
    name = register(RECORDS, ["cat", "dog"])
    result = _run(CorLocEvaluator(name), PREDICTIONS)["corloc"]
    # cat: images a, b, c -> hits a, c; dog: images a, c -> hit c
    assert result["CorLoc-cat"] == pytest.approx(200 / 3)
    assert result["CorLoc-dog"] == pytest.approx(50.0)
    assert result["CorLoc"] == pytest.approx((200 / 3 + 50) / 2)
    assert list(result) == ["CorLoc", "CorLoc-cat", "CorLoc-dog"]


def test_corloc_without_difficult_only_images(register):
    name = register(RECORDS, ["cat", "dog"])
    evaluator = CorLocEvaluator(name, count_difficult_only=False, distributed=False)
    result = _run(evaluator, PREDICTIONS)["corloc"]
    # image c leaves the cat denominator: cat images a, b -> hit a
    assert result["CorLoc-cat"] == pytest.approx(50.0)
    assert result["CorLoc-dog"] == pytest.approx(50.0)
    assert result["CorLoc"] == pytest.approx(50.0)


def test_iou_threshold_boundary(register):
    name = register(RECORDS[:1], ["cat", "dog"])
    # IoU 100 / 205 < 0.5 with the cat GT [0, 0, 10, 10]
    below = {"a": _output([[0, 0, 10, 20.5]], [0.9], [0])}
    assert _run(CorLocEvaluator(name), below)["corloc"]["CorLoc-cat"] == 0.0
    exact = {"a": _output([[0, 0, 10, 20]], [0.9], [0])}
    assert _run(CorLocEvaluator(name), exact)["corloc"]["CorLoc-cat"] == 100.0
    stricter = CorLocEvaluator(name, iou_threshold=0.6)
    assert _run(stricter, exact)["corloc"]["CorLoc-cat"] == 0.0


def test_any_gt_box_of_the_class_can_match_and_other_classes_do_not(register):
    records = [
        {
            "image_id": 7,
            "annotations": [
                _ann([0, 0, 10, 10], 0),
                _ann([30, 30, 60, 60], 0),
                _ann([0, 0, 5, 5], 1),
            ],
        }
    ]
    name = register(records, ["cat", "dog"])
    second_gt = {7: _output([[30, 30, 60, 60]], [0.4], [0])}
    assert _run(CorLocEvaluator(name), second_gt)["corloc"]["CorLoc-cat"] == 100.0
    # a cat box on the dog GT is a miss for cat
    on_dog = {7: _output([[0, 0, 5, 5]], [0.4], [0])}
    result = _run(CorLocEvaluator(name), on_dog)["corloc"]
    assert result["CorLoc-cat"] == 0.0
    assert result["CorLoc-dog"] == 0.0


def test_class_without_images_is_nan_and_left_out_of_mean(register):
    name = register(RECORDS, ["cat", "dog", "bird"])
    result = _run(CorLocEvaluator(name), PREDICTIONS)["corloc"]
    assert math.isnan(result["CorLoc-bird"])
    assert result["CorLoc"] == pytest.approx((200 / 3 + 50) / 2)


def test_image_without_predictions_is_a_miss_and_only_processed_images_count(register):
    name = register(RECORDS, ["cat", "dog"])
    predictions = {"a": _output([], [], []), "c": PREDICTIONS["c"]}
    result = _run(CorLocEvaluator(name), predictions)["corloc"]
    # cat: images a, c -> hit c; dog: images a, c -> hit c; image b was not processed
    assert result["CorLoc-cat"] == pytest.approx(50.0)
    assert result["CorLoc-dog"] == pytest.approx(50.0)


def test_top_box_per_class_keeps_highest_score_first_on_ties():
    boxes = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    scores = torch.tensor([0.2, 0.9, 0.9, 0.5, 0.1])
    classes = torch.tensor([3, 1, 1, 3, 0])
    top = top_box_per_class(boxes, scores, classes)
    assert sorted(top) == [0, 1, 3]
    assert top[1] == (pytest.approx(0.9), boxes[1].tolist())
    assert top[3] == (pytest.approx(0.5), boxes[3].tolist())
    assert top[0] == (pytest.approx(0.1), boxes[4].tolist())
    assert top_box_per_class(boxes[:0], scores[:0], classes[:0]) == {}


def test_same_image_in_two_batches_keeps_the_better_box(register):
    name = register(RECORDS[:1], ["cat", "dog"])
    evaluator = CorLocEvaluator(name)
    evaluator.process([{"image_id": "a"}], [_output([[60, 60, 70, 70]], [0.3], [0])])
    evaluator.process([{"image_id": "a"}], [_output([[0, 0, 10, 10]], [0.8], [0])])
    assert evaluator.evaluate()["corloc"]["CorLoc-cat"] == 100.0


def test_bad_inputs_raise_clear_errors(register):
    name = register(RECORDS, ["cat", "dog"])
    with pytest.raises(ValueError, match="iou_threshold"):
        CorLocEvaluator(name, iou_threshold=0.0)
    evaluator = CorLocEvaluator(name)
    with pytest.raises(ValueError, match="'a'.*pred_classes"):
        evaluator.process([{"image_id": "a"}], [_output([[0, 0, 1, 1]], [0.5], [2])])
    evaluator.reset()
    evaluator.process([{"image_id": "zzz"}], [_output([[0, 0, 1, 1]], [0.5], [0])])
    with pytest.raises(KeyError, match="zzz"):
        evaluator.evaluate()
    bad_gt = register([{"image_id": "q", "annotations": [_ann([0, 0, 1, 1], 5)]}], ["cat"])
    evaluator = CorLocEvaluator(bad_gt)
    evaluator.process([{"image_id": "q"}], [_output([], [], [])])
    with pytest.raises(ValueError, match="'q'.*category_id 5"):
        evaluator.evaluate()


def test_no_processed_image_returns_empty(register):
    name = register(RECORDS, ["cat", "dog"])
    assert CorLocEvaluator(name).evaluate() == {}


def _distributed_worker(rank, world_size, port, dataset_name, queue):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    DatasetCatalog.register(dataset_name, lambda: RECORDS)
    MetadataCatalog.get(dataset_name).thing_classes = ["cat", "dog"]
    # rank 0 sees image a, rank 1 sees images b and c
    shard = {0: ["a"], 1: ["b", "c"]}[rank]
    result = _run(CorLocEvaluator(dataset_name), {i: PREDICTIONS[i] for i in shard})
    queue.put((rank, result))
    dist.barrier()
    dist.destroy_process_group()


def test_distributed_gathers_to_main_process_only():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the workers reuse the imported modules instead of importing detectron2 again
    queue = mp.get_context("fork").SimpleQueue()
    name = f"test_corloc_{uuid.uuid4().hex}"
    args = (2, port, name, queue)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="fork")
    results = dict(queue.get() for _ in range(2))
    assert results[1] == {}
    assert results[0]["corloc"]["CorLoc-cat"] == pytest.approx(200 / 3)
    assert results[0]["corloc"]["CorLoc-dog"] == pytest.approx(50.0)
