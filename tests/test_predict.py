import json
import os
import subprocess
import sys

from rofjax.data.synthetic import write_generated_duee

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_then_predict_writes_a_duee_submission(tmp_path):
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
