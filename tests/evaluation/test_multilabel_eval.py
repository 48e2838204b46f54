import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from wsod_d2.evaluation.multilabel import VOCClassificationEvaluator, voc_classification_ap


def _brute_force_ap(scores, labels):
    """AP as the mean over positives i of #{positives j: s_j >= s_i} / #{kept j: s_j >= s_i}."""
    kept = labels != -1
    scores, positive = scores[kept], labels[kept] == 1
    precisions = [(positive & (scores >= s)).sum() / (scores >= s).sum() for s in scores[positive]]
    return float(np.mean(precisions)) if precisions else float("nan")


def test_ap_hand_computed():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    # class 0: positives at ranks 1, 3 -> (1/1 + 2/3) / 2; class 1: rank 3 -> 1/3
    np.testing.assert_allclose(voc_classification_ap(scores, labels), [5 / 6, 1 / 3])


def test_ignored_entries_are_left_out():
    scores = np.array([[0.99], [0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[-1], [1], [-1], [0], [1]])
    # kept ranking: pos, neg, pos -> (1 + 2/3) / 2; as negatives they would give (1/2 + 2/5) / 2
    np.testing.assert_allclose(voc_classification_ap(scores, labels), [5 / 6])


def test_ties_share_the_precision_at_the_block_end_whatever_the_order():
    scores = np.array([[0.5], [0.5], [0.1]])
    # block {0.5} holds one positive of two images: precision 1/2; then 2/3
    expected = (1 / 2 + 2 / 3) / 2
    np.testing.assert_allclose(voc_classification_ap(scores, np.array([[1], [0], [1]])), [expected])
    np.testing.assert_allclose(voc_classification_ap(scores, np.array([[0], [1], [1]])), [expected])


def test_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(40, 6)).astype(np.float64)
    labels = rng.choice([-1, 0, 1], size=(40, 6), p=[0.1, 0.6, 0.3])
    ap = voc_classification_ap(scores, labels)
    expected = [_brute_force_ap(scores[:, c], labels[:, c]) for c in range(6)]
    np.testing.assert_allclose(ap, expected)


def test_matches_sklearn_when_available():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(30, 3)).round(1)
    labels = rng.integers(0, 2, size=(30, 3))
    expected = [metrics.average_precision_score(labels[:, c], scores[:, c]) for c in range(3)]
    np.testing.assert_allclose(voc_classification_ap(scores, labels), expected)


def test_class_without_positives_is_nan():
    ap = voc_classification_ap(np.array([[0.3, 0.2], [0.1, 0.4]]), np.array([[0, 1], [-1, 0]]))
    assert math.isnan(ap[0])
    # class 1: the only positive ranks second
    assert ap[1] == pytest.approx(0.5)


def test_bad_arrays_raise():
    with pytest.raises(ValueError, match="shape|\\(N, C\\)"):
        voc_classification_ap(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels"):
        voc_classification_ap(np.zeros((2, 1)), np.array([[2], [0]]))
    with pytest.raises(ValueError, match="NaN"):
        voc_classification_ap(np.array([[np.nan], [0.0]]), np.array([[1], [0]]))


def _ann(category_id, difficult=False):
    box = [0, 0, 10, 10]
    return {
        "bbox": box,
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category_id,
        "difficult": difficult,
    }


@pytest.fixture
def dataset_name():
    name = f"test_multilabel_{uuid.uuid4().hex}"
    records = [
        {"image_id": 1, "annotations": [_ann(0)]},
        {"image_id": 2, "annotations": [_ann(1)]},
        # difficult-only cat: ignored for cat; a plain dog
        {"image_id": 3, "annotations": [_ann(0, True), _ann(1)]},
        # a difficult and a plain cat: positive
        {"image_id": 4, "annotations": [_ann(0, True), _ann(0)]},
        {"image_id": 5, "annotations": []},
    ]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).thing_classes = ["cat", "dog"]
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_evaluator_end_to_end(dataset_name):
    image_scores = {
        1: [0.2, 0.3],
        2: [0.9, 0.8],
        3: [0.95, 0.4],
        4: [0.1, 0.6],
        5: [0.15, 0.5],
    }
    evaluator = VOCClassificationEvaluator(dataset_name)
    evaluator.reset()
    for ids in ([1, 2], [3, 4, 5]):
        evaluator.process(
            [{"image_id": i} for i in ids],
            [{"image_scores": torch.tensor(image_scores[i])} for i in ids],
        )
    result = evaluator.evaluate()["cls"]
    # cat, image 3 ignored: 2(neg) 1(pos) 5(neg) 4(pos) -> (1/2 + 2/4) / 2
    assert result["AP-cat"] == pytest.approx(50.0)
    # dog: 2(pos) 4(neg) 5(neg) 3(pos) 1(neg) -> (1 + 2/4) / 2
    assert result["AP-dog"] == pytest.approx(75.0)
    assert result["mAP"] == pytest.approx(62.5)
    assert list(result) == ["mAP", "AP-cat", "AP-dog"]


def test_evaluator_rejects_wrong_score_shape(dataset_name):
    evaluator = VOCClassificationEvaluator(dataset_name, distributed=False)
    with pytest.raises(ValueError, match="Image 1.*\\(2,\\)"):
        evaluator.process([{"image_id": 1}], [{"image_scores": torch.zeros(3)}])
    evaluator.process([{"image_id": 99}], [{"image_scores": torch.zeros(2)}])
    with pytest.raises(KeyError, match="99"):
        evaluator.evaluate()
    evaluator.reset()
    assert evaluator.evaluate() == {}
