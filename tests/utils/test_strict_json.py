"""metrics.json and the results files are strict JSON: NaN as null, infinities as strings that
float() reads back, every key kept."""
import json
import math

import numpy as np
import torch
from detectron2.utils.events import EventStorage

from wsod_d2.utils.strict_json import StrictJSONWriter, dumps_strict, metric_value


def refuse(literal):
    raise ValueError(f"non-strict JSON literal {literal}")


def test_dumps_strict_encodes_non_finite_values():
    obj = {"a": float("nan"), "b": [float("inf"), -np.float64("inf")], "c": torch.tensor(2.5)}
    text = dumps_strict(obj)
    back = json.loads(text, parse_constant=refuse)
    assert back == {"a": None, "b": ["Infinity", "-Infinity"], "c": 2.5}
    assert math.isnan(metric_value(back["a"])) and metric_value(back["b"][1]) == -math.inf


def test_metrics_writer_is_strict(tmp_path):
    path = tmp_path / "metrics.json"
    writer = StrictJSONWriter(str(path))
    with EventStorage(start_iter=4) as storage:
        storage.put_scalars(loss=0.5, smoothing_hint=False)
        storage.put_scalars(**{"test/corloc/CorLoc-boat": float("nan")}, smoothing_hint=False)
        writer.write()
        storage.step()
        storage.put_scalars(loss=0.25, smoothing_hint=False)
        writer.write()
    writer.close()
    lines = [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]
    assert lines == [
        {"iteration": 4, "loss": 0.5, "test/corloc/CorLoc-boat": None},
        {"iteration": 5, "loss": 0.25},
    ]
