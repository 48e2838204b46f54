"""trim_logs_for_resume on hand-written output dirs: offsets recorded by LogOffsetsHook are cut
back to; without them metrics.json keeps the records up to the checkpoint's iteration."""
import json

from wsod_d2.engine.resume import checkpoint_iteration, trim_logs_for_resume


def _output_dir(tmp_path, iterations, offsets=None):
    (tmp_path / "metrics.json").write_text(
        "".join(
            json.dumps({"iteration": i, "total_loss": 1.0 / (i + 1)}) + "\n" for i in iterations
        )
    )
    (tmp_path / "log.txt").write_text("".join(f" iter: {i}  total_loss: 0.5\n" for i in iterations))
    (tmp_path / "last_checkpoint").write_text("model_0000014.pth")
    (tmp_path / "model_0000014.pth").write_bytes(b"")
    if offsets is not None:
        (tmp_path / "log_offsets.json").write_text(json.dumps(offsets))


def test_trims_to_the_recorded_offsets(tmp_path):
    line = len(" iter: 9  total_loss: 0.5\n")
    metrics_line = len(json.dumps({"iteration": 9, "total_loss": 0.1}) + "\n")
    offsets = {"14": {"log.txt": line, "metrics.json": metrics_line}, "29": {}}
    _output_dir(tmp_path, [9, 19], offsets)
    assert trim_logs_for_resume(str(tmp_path)) == 14
    assert [json.loads(x)["iteration"] for x in open(tmp_path / "metrics.json")] == [9]
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert log[0] == " iter: 9  total_loss: 0.5" and "iter: 19" not in "".join(log)
    assert log[1].startswith("[wsod_d2] --resume from model_0000014.pth (iteration 14)")
    assert json.loads((tmp_path / "log_offsets.json").read_text()) == {"14": offsets["14"]}


def test_without_offsets_metrics_are_filtered_and_the_log_marked(tmp_path):
    _output_dir(tmp_path, [9, 14, 19])
    assert trim_logs_for_resume(str(tmp_path)) == 14
    assert [json.loads(x)["iteration"] for x in open(tmp_path / "metrics.json")] == [9, 14]
    last = (tmp_path / "log.txt").read_text().splitlines()[-1]
    assert "lines above this one for later iterations come from the killed run" in last
    assert "metrics.json trimmed: {'metrics.json': '1 records'}" in last


def test_no_checkpoint_touches_nothing(tmp_path):
    (tmp_path / "metrics.json").write_text('{"iteration": 3}\n')
    assert trim_logs_for_resume(str(tmp_path)) is None
    assert (tmp_path / "metrics.json").read_text() == '{"iteration": 3}\n'
    assert not (tmp_path / "log.txt").exists()


def test_checkpoint_iteration_from_name():
    assert checkpoint_iteration("/x/model_0000123.pth") == 123
