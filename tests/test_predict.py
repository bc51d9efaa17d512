import json
import os
import subprocess
import sys

from rofjax.data.synthetic import write_generated_duee

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_then_predict_writes_a_duee_submission_and_exports_an_event_model(tmp_path):
    data = write_generated_duee(tmp_path / "data", train=32, dev=8, seed=0)
    common = ["--config", "configs/ie/duee.py", f"--workdir={tmp_path / 'run'}", f"--config.data_dir={data}"]
    train = subprocess.run([sys.executable, "-m", "train.finetune", *common, "--config.total_steps=2",
                            "--config.batch_size=8", "--config.head_size=16", "--config.progress_bar=False"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "train.predict", *common], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    path = out.stdout.strip().splitlines()[-1]
    assert path.endswith("duee_predict.json")
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert len(lines) == 8 and all({"id", "text", "event_list"} <= set(line) for line in lines)

    # The same run as a self-contained model: exported, its data gone, events from raw text.
    from rofjax.cli import main
    from rofjax.export import load
    from rofjax.pipelines import pipeline

    assert main(["export", str(tmp_path / "run"), str(tmp_path / "model")]) == 0
    os.rename(data, str(data) + "-gone")
    text = "7月12日，某公司宣布裁员300人。"
    events = pipeline("events", str(tmp_path / "model"), batch_size=4)(text)
    schema = load(tmp_path / "model").info["labels"]["event_schema"]["roles"]
    for event in events:
        assert event["type"] in schema
        assert event["trigger"] is None or text[event["trigger_start"]:].startswith(event["trigger"])
        for argument in event["arguments"]:
            assert argument["role"] in schema[event["type"]]
            assert text[argument["start"]:argument["end"]] == argument["text"]
