import json
import os

from rofjax.data.synthetic import write_generated_duee


def test_train_then_predict_writes_a_duee_submission_and_exports_an_event_model(tmp_path):
    """In process: the command lines around `run` and `predict` are tested on afqmc (test_clue.py)."""
    from configs.ie import duee
    from rofjax.training.loop import run
    from train.predict import predict

    data = write_generated_duee(tmp_path / "data", train=32, dev=8, seed=0)
    config = duee.get_config()
    config.data.data_dir, config.data.head_size = str(data), 16
    config.train.total_steps, config.train.batch_size, config.train.progress_bar = 2, 8, False
    run(config, str(tmp_path / "run"))
    path = predict(config, str(tmp_path / "run"))
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
