"""WSOLEvaluator's box metrics over worker processes equal those of one process, exactly."""
import numpy as np
import pytest

from wsod_d2.benchmarks.wsol_metrics import evaluator_io
from wsod_d2.evaluation.wsol import pool
from wsod_d2.evaluation.wsol.evaluators import WSOLEvaluator


def _evaluate(num_workers, inputs, outputs):
    evaluator = WSOLEvaluator("unused", distributed=False, num_workers=num_workers)
    evaluator.reset()
    for start in range(0, len(inputs), 5):  # batches of 5, as a test loader would give them
        evaluator.process(inputs[start : start + 5], outputs[start : start + 5])
    return evaluator.evaluate()["wsol"]


@pytest.fixture
def small_chunks(monkeypatch):
    # several chunks per worker and a full queue, on a small set
    monkeypatch.setattr(pool, "CHUNK_IMAGES", 3)
    monkeypatch.setattr(pool, "PENDING_CHUNKS_PER_WORKER", 1)


def test_one_and_two_processes_give_the_in_process_metrics(small_chunks):
    inputs, outputs = evaluator_io(23, size=64, seed=1)
    expected = _evaluate(0, inputs, outputs)
    assert 0 < expected["MaxBoxAccV2"] < 100  # a set that tells the images apart
    for num_workers in (1, 2):
        np.testing.assert_equal(_evaluate(num_workers, inputs, outputs), expected)


def test_an_image_error_in_a_worker_names_the_image(small_chunks):
    inputs, outputs = evaluator_io(7, size=64, seed=2)
    inputs[5]["annotations"][0]["bbox"] = [40, 40, 10, 10]  # x1 < x0
    with pytest.raises(ValueError, match="Image 5: gt_boxes must be XYXY"):
        _evaluate(2, inputs, outputs)


def test_num_workers_below_minus_one_is_refused():
    with pytest.raises(ValueError, match="num_workers must be >= -1"):
        WSOLEvaluator("unused", distributed=False, num_workers=-2)
