"""What an evaluation keeps in its output folder (``OUTPUT_DIR/inference/<dataset>/``), whatever
evaluators run:

* ``instances_predictions.pth``: detectron2's COCOEvaluator format, a list with one
  ``{"image_id", "instances": [{"image_id", "category_id", "bbox", "score"}, ...]}`` per image;
  ``bbox`` is XYWH in the original image, ``category_id`` the contiguous id (index in the
  dataset's ``thing_classes``).
* ``coco_instances_results.json``: the COCO results format, every detection in one list, with
  ``category_id`` the dataset's own id (``thing_dataset_id_to_contiguous_id`` undone, as
  detectron2's COCOEvaluator does; VOC-style datasets have no such map and keep the contiguous
  id, which is also the id of detectron2's ``<dataset>_coco_format.json`` conversion) and
  ``image_id`` the dataset dict's (a VOC file stem such as "000005").
* ``results.json``: the metrics of every evaluator, ``{task: {metric: value}}``, strict JSON.
"""
import itertools
import logging
import os
from collections import OrderedDict
from typing import Dict, List

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

from wsod_d2.utils.strict_json import dump_strict, dumps_strict

PREDICTIONS_FILE = "instances_predictions.pth"
COCO_RESULTS_FILE = "coco_instances_results.json"
RESULTS_FILE = "results.json"


def dataset_category_ids(dataset_name: str) -> List[int]:
    """The dataset's category id of each contiguous class id (identity without a COCO map)."""
    meta = MetadataCatalog.get(dataset_name)
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None)
    if mapping is None:
        return list(range(len(meta.thing_classes)))
    reverse = {v: k for k, v in mapping.items()}
    return [reverse[i] for i in range(len(reverse))]


class PrefixedTasks(DatasetEvaluator):
    """Another evaluator whose result keys (tasks) get a prefix, so that two evaluators reporting
    the same task ("bbox" from VOC and from COCO) can run together."""

    def __init__(self, evaluator: DatasetEvaluator, prefix: str):
        self._evaluator = evaluator
        self._prefix = prefix

    def reset(self):
        self._evaluator.reset()

    def process(self, inputs, outputs):
        self._evaluator.process(inputs, outputs)

    def evaluate(self):
        results = self._evaluator.evaluate()
        if results is None:
            return None
        return OrderedDict((self._prefix + task, v) for task, v in results.items())


class PredictionsWriter(DatasetEvaluator):
    """Saves every image's detections (the two prediction files above); reports no metric."""

    def __init__(self, dataset_name: str, output_dir: str, distributed: bool = True):
        self._category_ids = dataset_category_ids(dataset_name)
        self._output_dir = output_dir
        self._distributed = distributed
        self._logger = logging.getLogger(__name__)
        self.reset()

    def reset(self):
        self._predictions: List[Dict] = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "instances": instances_to_coco_json(instances, inp["image_id"]),
                }
            )

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain(*parts))
        else:
            predictions = self._predictions
        os.makedirs(self._output_dir, exist_ok=True)
        torch.save(predictions, os.path.join(self._output_dir, PREDICTIONS_FILE))
        # New dicts: the .pth above keeps the contiguous ids.
        coco_results = [
            {**det, "category_id": self._category_ids[det["category_id"]]}
            for pred in predictions
            for det in pred["instances"]
        ]
        path = os.path.join(self._output_dir, COCO_RESULTS_FILE)
        with open(path, "w") as f:
            f.write(dumps_strict(coco_results))
        n = len(predictions)
        self._logger.info(f"Saved {len(coco_results)} detections ({n} images) in {path}")
        return {}


class EvaluatorsWithResultsFile(DatasetEvaluators):
    """detectron2's DatasetEvaluators that also writes the merged results to ``results_file``
    (strict JSON) on the main process."""

    def __init__(self, evaluators: List[DatasetEvaluator], results_file: str):
        super().__init__(evaluators)
        self._results_file = results_file

    def evaluate(self):
        results = super().evaluate()
        if comm.is_main_process():
            os.makedirs(os.path.dirname(self._results_file) or ".", exist_ok=True)
            dump_strict(results, self._results_file, indent=1)
        return results
