"""Faults a run must survive or refuse clearly: bad values, a second run on one folder, a damaged latest
checkpoint, an unwritable checkpoint folder, exploding losses, reruns of finished runs."""

import json
import os
import shutil

import pytest

from configs.demo import get_config
from rofjax.checkpoint.run import RunFolder, RunLockedError, _truncate_jsonl
from rofjax.training.loop import NonFiniteLossError, run, validate_config


def tiny(total_steps=4, **train):
    config = get_config()
    config.unlock()
    config.model.num_layers, config.model.hidden_size, config.model.intermediate_size = 1, 32, 64
    config.data.max_length = 24
    config.train.batch_size = 8
    config.train.total_steps = total_steps
    config.train.save_every = 2
    config.train.keep_checkpoints = 3
    config.train.progress_bar = False
    config.eval.every = 0
    config.eval.examples = 16
    for key, value in train.items():
        config.train[key] = value
    return config


def _steps(path):
    return [json.loads(line)["step"] for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step run (checkpoints at steps 2 and 4), trained once; each test works on its own copy."""
    workdir = tmp_path_factory.mktemp("reliability") / "run"
    run(tiny(4), str(workdir))

    def copy(to):
        shutil.copytree(workdir, to)
        return to

    return copy


@pytest.mark.parametrize("key,value,expected", [("save_every", 0, "≥ 1"), ("log_every", 0, "≥ 1"),
                                                ("keep_checkpoints", 0, "delete every checkpoint"),
                                                ("nonfinite", "ignore", "'stop' or 'skip'")])
def test_values_no_run_can_use_are_refused_first(key, value, expected):
    config = tiny()
    config.train[key] = value
    with pytest.raises(ValueError, match=f"config.train.{key}=.*expected.*{expected}"):
        validate_config(config)


@pytest.mark.parametrize("section,key,value,expected", [("data", "max_length", 0, "≥ 3"),
                                                        ("optim", "lr", -1.0, "≥ 0"),
                                                        ("data", "mask_rate", 0.0, "in \\(0, 1\\]"),
                                                        ("data", "mask_rate", 1.5, "in \\(0, 1\\]"),
                                                        ("data", "max_documents", 0, "≥ 1")])
def test_sizes_and_rates_no_run_can_use_are_refused_first(section, key, value, expected):
    config = tiny()
    config[section][key] = value
    with pytest.raises(ValueError, match=f"config.{section}.{key}=.*expected {expected}"):
        validate_config(config)


@pytest.mark.parametrize("key,value,expected", [
    ("lst_lr", -1.0, r"config.lst_lr=-1.0; expected ≥ 0"),
    ("optim.no_decay", ("[",), r"config.optim.no_decay\[0\]='\[' is not a regex"),
    ("optim.param_lr", (("encoder/[", 0.0),), r"config.optim.param_lr\[0\]: 'encoder/\[' is not a regex"),
    ("optim.param_lr", ((0.0, "encoder"),), r"param_lr\[0\]=\(0.0, 'encoder'\); expected a \(path regex, multiplier\)"),
    ("optim.param_lr", ("encoder", 0.0), r"param_lr\[0\]='encoder'; expected a \(path regex, multiplier\) pair"),
    ("optim.param_lr", (("encoder", -1.0),), r"the multiplier must be a number ≥ 0"),
    ("optim.param_lr", (("encoder", "half"),), r"the multiplier must be a number ≥ 0"),
])
def test_malformed_rates_and_path_rules_are_refused_first_naming_the_key(key, value, expected):
    config = tiny()
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=expected):
        validate_config(config)


def test_a_param_lr_rule_that_matches_no_parameter_is_refused(tmp_path):
    config = tiny(2)
    config.optim.param_lr = (("^encoder/", 0.5), ("^nothing_like_this/", 0.0))
    with pytest.raises(ValueError, match=r"param_lr\[1\] \('\^nothing_like_this/'\) matches no parameter; the "
                                         r"paths look like \S+/"):
        run(config, str(tmp_path / "run"))


def test_a_second_run_on_one_folder_is_refused_naming_the_holder(tmp_path):
    first = RunFolder(tmp_path, best_metric="accuracy").open()
    try:
        with pytest.raises(RunLockedError, match=rf"{tmp_path} is in use by pid {os.getpid()} on host"):
            RunFolder(tmp_path, best_metric="accuracy").open()
    finally:
        first.close()
    RunFolder(tmp_path, best_metric="accuracy").open().close()        # released when the holder ends


def test_a_run_on_a_folder_in_use_is_refused_before_any_work(tmp_path, monkeypatch):
    import rofjax.training.loop as loop

    def no_data(name):
        raise AssertionError("the data was read before the lock")

    holder = RunFolder(tmp_path, best_metric="accuracy").open()
    try:
        monkeypatch.setattr(loop, "get_dataset", no_data)
        with pytest.raises(RunLockedError, match="is in use by pid"):
            run(tiny(2), str(tmp_path))
    finally:
        holder.close()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="nosuch"):           # a failure after the claim releases the folder
        bad = tiny(2)
        bad.data.dataset = "nosuch"
        run(bad, str(tmp_path))
    RunFolder(tmp_path, best_metric="accuracy").open().close()


def test_an_unwritable_checkpoint_folder_is_named_before_training(tmp_path):
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write checkpoints to .*checkpoints"):
        RunFolder(tmp_path, best_metric="accuracy").open()


def test_a_save_that_cannot_fit_stops_before_writing_and_the_rerun_resumes(tmp_path, finished_run, monkeypatch):
    from rofjax.checkpoint.run import DiskFullError

    workdir = finished_run(tmp_path / "run")                               # checkpoints at steps 2 and 4
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=8 << 20))
    with pytest.raises(DiskFullError, match=r"not enough space to checkpoint into .*checkpoints: a save needs about "
                                            r"\d+ MiB and 8 MiB are free"):
        run(tiny(6), str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]       # nothing half-written
    monkeypatch.setattr(shutil, "disk_usage", real)
    run(tiny(6), str(workdir))
    assert _steps(workdir / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]


def test_logs_keep_each_step_once_in_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [1, 2, 3, 1, 2, 3, 4, 5]
    path.write_text("".join(json.dumps({"step": s, "loss": i}) + "\n" for i, s in enumerate(rows)) + '{"step": 6, "lo')
    _truncate_jsonl(str(path), 4)
    assert _steps(path) == [1, 2, 3, 4]
    assert [json.loads(line)["loss"] for line in open(path)][:3] == [3, 4, 5]      # the rerun's rows win


def test_damaged_latest_step_is_moved_aside_and_the_one_before_restored(tmp_path, finished_run):
    workdir = finished_run(tmp_path / "run")                               # checkpoints at steps 2 and 4
    state_files = [os.path.join(root, name) for root, _, names in os.walk(workdir / "checkpoints" / "4" / "state")
                   for name in names if os.path.getsize(os.path.join(root, name)) > 64]
    for path in state_files:                                               # damage every data file of step 4
        with open(path, "r+b") as f:
            f.truncate(16)
    with pytest.warns(UserWarning, match="checkpoints/4 could not be restored"):
        result = run(tiny(6), str(workdir))
    assert (workdir / "checkpoints" / "unreadable-4").is_dir()           # kept, not deleted
    assert _steps(workdir / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    # A finished run, rerun, reports its evaluation without logging it again.
    assert run(tiny(6), str(workdir)) == result
    assert _steps(workdir / "eval_metrics.jsonl") == [6]                  # step 4's was after the restored step


def test_when_every_checkpoint_is_damaged_the_run_starts_afresh_exactly(tmp_path, finished_run):
    workdir = finished_run(tmp_path / "run")
    fresh = [json.loads(line)["loss"] for line in open(workdir / "metrics.jsonl", encoding="utf-8")]
    for step in ("2", "4"):
        for root, _, names in os.walk(workdir / "checkpoints" / step / "state"):
            for name in names:
                if os.path.getsize(os.path.join(root, name)) > 64:
                    with open(os.path.join(root, name), "r+b") as f:
                        f.truncate(16)
    with pytest.warns(UserWarning, match="could not be restored") as caught:
        run(tiny(4), str(workdir))
    assert any("the run starts again from step 0" in str(w.message) for w in caught)
    again = [json.loads(line)["loss"] for line in open(workdir / "metrics.jsonl", encoding="utf-8")]
    assert again == fresh                   # the data from its first batch, not from where a damaged step left it


def test_an_unknown_best_metric_is_refused_before_training(tmp_path):
    wrong = tiny(2)
    wrong.eval.best_metric = "f1_nope"
    with pytest.raises(KeyError, match="best_metric='f1_nope' is not among the evaluation metrics of "
                                       "ClassificationTask: loss, accuracy, examples"):
        run(wrong, str(tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_metric_names_a_task_declares_must_be_those_it_reports():
    import contextlib
    from types import SimpleNamespace

    from rofjax.training.loop import evaluate

    class Declared:
        metric_names = ("loss", "accuracy")

        def evaluate(self, params, records, batch_size):
            return {"loss": 1.0, "acc": 0.5}

    trainer = SimpleNamespace(context=contextlib.nullcontext)
    config = tiny(2)
    with pytest.raises(RuntimeError, match=r"Declared.evaluate returned the metrics \['acc', 'loss'\], but the "
                                           r"task declares \['accuracy', 'loss'\]"):
        evaluate(trainer, Declared(), None, [{}], config)
    Declared.metric_names = ()                        # undeclared (a task of your own): not checked here
    assert evaluate(trainer, Declared(), None, [{}], config) == {"loss": 1.0, "acc": 0.5}


def test_a_task_declaring_no_metrics_stops_before_the_row_of_an_unknown_best_metric(tmp_path, monkeypatch):
    """A task of your own need not declare its metric names: an unknown best_metric then stops the run at its
    first evaluation, before the row is written, so that the fixed rerun evaluates again."""
    from rofjax.training.tasks import ClassificationTask

    monkeypatch.setattr(ClassificationTask, "metric_names", ())
    wrong = tiny(2)
    wrong.eval.best_metric = "f1_nope"
    with pytest.raises(KeyError, match="best_metric='f1_nope' is not among the evaluation metrics"):
        run(wrong, str(tmp_path))
    assert not os.path.exists(tmp_path / "eval_metrics.jsonl") or _steps(tmp_path / "eval_metrics.jsonl") == []
    result = run(tiny(2), str(tmp_path))
    assert "accuracy" in result and sorted(os.listdir(tmp_path / "best")) == ["2"]


def test_damaged_best_parameters_are_named_when_exported_or_predicted(tmp_path, finished_run):
    from rofjax.cli import main

    workdir = finished_run(tmp_path / "run")
    for root, _, names in os.walk(workdir / "best"):
        for name in names:
            if "ocdbt" in root and os.path.getsize(os.path.join(root, name)) > 64:
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(16)
    with pytest.raises(ValueError, match=r"checkpoint .*best/4/state could not be read \(.*\)"):
        RunFolder(workdir).restore_params()
    assert main(["export", str(workdir), str(tmp_path / "model")]) == 2
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_of_another_model_is_refused_kept_and_named(tmp_path, finished_run):
    from rofjax.checkpoint import CheckpointMismatchError
    from rofjax.cli import main as rofjax_cli

    workdir = finished_run(tmp_path / "run")
    wider = tiny(6)
    wider.model.hidden_size = 48
    with pytest.raises(CheckpointMismatchError, match=r"saved by a run of another model or optimiser \(params/"
                                                      r"classifier/kernel is stored with shape \(32, 2\) where \(48, 2\)"):
        run(wider, str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]        # nothing moved aside
    # The same shapes in another optimiser state (clipping off drops a transform): refused too, not taken for damage.
    unclipped = tiny(6)
    unclipped.optim.clip_norm = 0.0
    with pytest.raises(CheckpointMismatchError, match=r"this run needs opt_state/0/count, the checkpoint holds "
                                                      r"opt_state/1/count"):
        run(unclipped, str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"] and sorted(os.listdir(workdir / "best")) == ["4"]
    # The run folder converts as it is: parameters from best/, the model config the run wrote beside it.
    assert rofjax_cli(["convert", "--from", "rofjax", "--checkpoint", str(workdir / "best"),
                       "--out", str(tmp_path / "exported")]) == 0
    # Its parameters as the init_checkpoint of a deeper model: one parameter named, not two whole trees.
    deeper = tiny(2, init_checkpoint=str(workdir / "checkpoints"))
    deeper.model.num_layers = 2
    with pytest.raises(ValueError, match=r"run/checkpoints: (the )?encoder (parameter|has) \S+") as error:
        run(deeper, str(tmp_path / "deeper"))
    assert len(str(error.value)) < 300


def test_skipped_updates_are_counted_stopped_and_never_kept_as_best(tmp_path):
    config = tiny(20, nonfinite="skip", max_consecutive_skips=3)
    config.optim.lr = 1e12
    config.optim.clip_norm = 0.0
    with pytest.raises(NonFiniteLossError, match=r"3 updates in a row skipped"):
        run(config, str(tmp_path / "run"))
    assert not any(name.isdigit() for name in os.listdir(tmp_path / "run" / "best"))


def test_user_errors_end_in_one_line_and_exit_code_2(capsys):
    from train._errors import report_user_errors

    def fail():
        raise FileNotFoundError("/data/x.jsonl not found.")

    with pytest.raises(SystemExit) as exit_:
        report_user_errors(fail)
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: /data/x.jsonl not found.\n"


def test_out_of_memory_is_one_line_with_what_to_change(capsys):
    from train._errors import report_user_errors

    class XlaRuntimeError(RuntimeError):
        pass

    def step():
        raise XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 15364301478848 bytes.\nmore detail")

    with pytest.raises(SystemExit) as stop:
        report_user_errors(step)
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("error: out of memory: RESOURCE_EXHAUSTED: Out of memory allocating "
                                       "15364301478848 bytes. Lower train.batch_size or data.max_length, or use "
                                       "model.remat_policy / more devices (rofjax compile --topology … says what "
                                       "fits before a run).\n")
    with pytest.raises(ZeroDivisionError):                      # anything else is still a traceback: a bug
        report_user_errors(lambda: 1 / 0)


def test_an_init_checkpoint_kept_beside_another_vocabulary_is_refused(tmp_path):
    from rofjax.checkpoint.run import check_vocabulary_matches
    from rofjax.data.vocab import EMBEDDED_VOCAB

    tokens = open(EMBEDDED_VOCAB, encoding="utf-8").read().splitlines()
    step = tmp_path / "pretrain" / "checkpoints" / "40"
    step.mkdir(parents=True)
    (tmp_path / "pretrain" / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    for checkpoint in (step, step.parent, tmp_path / "pretrain"):             # the step, its folder, the run
        check_vocabulary_matches(str(checkpoint), EMBEDDED_VOCAB)             # the same tokens: nothing to say
    swapped = tokens[:5] + [tokens[6], tokens[5]] + tokens[7:]                # same size, two ids exchanged
    (tmp_path / "pretrain" / "vocab.txt").write_text("\n".join(swapped) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"init_checkpoint='{step}' was trained with the vocabulary "
                                         rf".*pretrain/vocab.txt.*\(line 6: .*\).*Set config.data.vocab_path="):
        check_vocabulary_matches(str(step), EMBEDDED_VOCAB)


def test_a_stored_data_position_is_checked_stage_by_stage_workers_included(tmp_path):
    """The layout of a saved grain position (its stages, not their values) against the pipeline resuming it:
    worker processes take a stored position without a word, so the check cannot wait for a failed restore."""
    from types import SimpleNamespace

    def worker_state(stage):
        return {"next_index_in_cycle": 0, "iterators_in_use_indices": [0, 1], "exhausted": [0, 0],
                "iterators_in_use_states": [stage, stage], "future_states": {}}

    cut = {"parent": {"next_index": 7}, "next_row": 1, "counter": 3}
    chunk = {"parent": {"parent": {"next_index": 7}, "next_index_in_buffer": 1}, "next_row": 1, "counter": 3}
    folder = RunFolder(tmp_path)
    stored = tmp_path / "checkpoints" / "4" / "data" / "process_0-of-1.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(worker_state(cut)))
    position = lambda state: SimpleNamespace(get_state=lambda: state)          # noqa: E731
    later = worker_state({**cut, "parent": {"next_index": 900}})
    later["future_states"] = {2: {"anything": 1}}                              # values, keyed by worker number
    assert folder._iterator_mismatch(4, position(later)) is None
    assert folder._iterator_mismatch(4, position(worker_state(chunk))) == (
        "at iterators_in_use_states/0/parent, saved with ['next_index'], this run has ['next_index_in_buffer', "
        "'parent']: data.pack, data.long_documents or the task differ; masked-LM runs begun before long documents "
        "were chunked resume with "
        "--config.data.long_documents=cut")
    assert folder._iterator_mismatch(4, position(cut)) == (
        "saved with config.data.workers=2, this run has config.data.workers=0")
    stored.write_text("{\"truncated")
    assert folder._iterator_mismatch(4, position(cut)) is None                 # unreadable: damage, handled apart
