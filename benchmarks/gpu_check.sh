#!/usr/bin/env bash
# One GPU session's checks, each section in its own process with its own time limit; inside the step and trainer
# sections every JAX run is a child process too, so an abort loses one row. Logs, JSON, the profile summary and the
# profiled step's HLO go to ${OUT:-gpu_check} (the device tool returns at most 8 files). Several stages run in the
# order given; every limit is cut to what is left of DEADLINE seconds (default 570) from the start.
#
#   bash benchmarks/gpu_check.sh diagnose   # Trainer variants + a profile and the HLO of the best one (~6 min)
#   bash benchmarks/gpu_check.sh measure    # the fastest Trainer settings traced, PyTorch eager / torch.compile vs
#                                           # rofjax (~6 min)
#   bash benchmarks/gpu_check.sh tests      # the GPU cases of the test suite (more than 100 s on an H200;
#                                           # TESTS_K=EXPR selects some, as pytest -k)
#   bash benchmarks/gpu_check.sh lst        # Ladder Side-Tuning memory and step time at base size
#   bash benchmarks/gpu_check.sh lstprof    # a trace of full fine-tuning's step there (AdaFactor)
#   bash benchmarks/gpu_check.sh ab         # the Trainer step of BASE (a tree of an earlier commit, default .base:
#                                           # `git archive REV rofjax benchmarks configs | tar -x -C .base`) and of
#                                           # this tree in the same session, this one traced
#   bash benchmarks/gpu_check.sh step       # PyTorch eager / torch.compile vs rofjax (and BASE's rofjax step first)
#   bash benchmarks/gpu_check.sh loop       # the training program's loop against its bare step (BASE's and this)
#   bash benchmarks/gpu_check.sh tests ab lst step   # several, in this order
set -u
OUT=${OUT:-gpu_check}
DEADLINE=${DEADLINE:-570}
BASE=${BASE:-.base}
mkdir -p "$OUT"
export JAX_PLATFORMS=cuda PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
run() {   # run NAME SECONDS COMMAND...: output to $OUT/NAME.log, one status line and the results to stdout
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 20 ]; then echo "== $name: skipped, ${left} s left of ${DEADLINE}"; return; fi
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s (limit $limit s)"
  grep -v '^    @\|^round\|^warmed\|Warning\|detach()\|return float\|^\*\*\*\|^tracing' "$OUT/$name.log" | tail -n 16
}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
B="python3 benchmarks/encoder_step.py --device gpu --rounds 3"
for STAGE in "${@:-measure}"; do
case $STAGE in
diagnose)
  # The best step so far (unrolled, unpacked rows, cuDNN's kernel dropout) traced and its HLO kept; then what the
  # packed layout costs by documents per row, what the hidden-dropout masks cost and the rbg generator.
  T=unrolled+fused_dropout+docs1,unrolled+fused_dropout+docs4,unrolled+fused_dropout+docs8,unrolled+no_dropout+docs1,unrolled+fused_dropout+docs1+rbg
  run trainer 330 $B --sections trainer --json "$OUT/trainer.json" --trainer-variants $T \
    --profile /tmp/rofjax_trace --profile-variant trainer:unrolled+fused_dropout+docs1 --dump-hlo /tmp/rofjax_hlo
  run profile 40 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 60 --steps 3
  (cd /tmp/rofjax_hlo 2>/dev/null && tar czf "$OUT/hlo.tgz" ./*step_fn*optimizations.txt)
  find /tmp/rofjax_trace -name 'perfetto_trace.json.gz' -size -15M -exec cp {} "$OUT/" \;
  ;;
measure)
  # rofjax's fastest GPU settings (unrolled, unpacked rows, cuDNN's kernel dropout) traced, and without any
  # dropout; then PyTorch eager and torch.compile against the same settings in the step comparison (70 s to compile).
  T=unrolled+fused_dropout+docs1,unrolled+no_dropout+docs1
  run trainer 150 $B --sections trainer --json "$OUT/trainer.json" --trainer-variants $T \
    --profile /tmp/rofjax_trace --profile-variant trainer:unrolled+fused_dropout+docs1 --dump-hlo /tmp/rofjax_hlo
  run profile 40 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 40 --steps 3
  (cd /tmp/rofjax_hlo 2>/dev/null && tar czf "$OUT/hlo.tgz" ./*step_fn*optimizations.txt)
  echo "cuBLASLt epilogues in the step: $(cat /tmp/rofjax_hlo/*step_fn*after_optimizations.txt 2>/dev/null \
    | grep -o 'epilogue":"[A-Z_]*"' | sort | uniq -c | tr '\n' ' ')"
  run step 220 $B --sections step --json "$OUT/step.json" --variants masked_logits+cudnn+one_hot+fused_dropout
  ;;
lst)
  # Ladder Side-Tuning against full and regex-frozen fine-tuning at base size: compiled and device peak memory,
  # step time (each method in its own process).
  run lst 400 python3 benchmarks/lst.py --batch 32 --steps 5 --dtype bfloat16 --json "$OUT/lst.json" --png "$OUT/lst.png"
  ;;
lstprof)
  # Where full fine-tuning's step goes at base size (AdaFactor, as the CLUE recipes): a trace of three steps.
  run lstprof 150 python3 benchmarks/lst.py --batch 32 --steps 3 --dtype bfloat16 --methods full --lengths 128 \
    --profile /tmp/lst_trace --profile-run full:128
  run lstprof_summary 30 python3 benchmarks/profile_summary.py /tmp/lst_trace --top 30 --steps 3
  ;;
tests)
  # The accelerator cases of the test suite (cuDNN attention against the reference, the dense-gradient lookups).
  run tests 180 python3 -m pytest -q -p no:cacheprovider tests/nn/test_fast_paths.py tests/nn/test_feedforward.py \
    ${TESTS_K:+-k "$TESTS_K"}
  ;;
ab)
  # The same Trainer run from the earlier tree and from this one, this one traced and its optimised HLO kept;
  # AB_VARIANTS (comma list) adds variants of this tree, each in its own process (e.g. $T+cublaslt,$T+cmdbuf).
  T=unrolled+fused_dropout+docs1
  run trainer_base 110 env PYTHONPATH="${PYTHONPATH:-}" python3 "$BASE/benchmarks/encoder_step.py" --device gpu \
    --rounds 3 --sections trainer --json "$OUT/trainer_base.json" --trainer-variants $T
  run trainer 120 env XLA_FLAGS="--xla_dump_to=/tmp/rofjax_hlo --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*step.*" \
    $B --sections trainer --json "$OUT/trainer.json" --trainer-variants $T --profile /tmp/rofjax_trace \
    --profile-variant trainer:$T
  [ -n "${AB_VARIANTS:-}" ] && run trainer_variants 200 $B --sections trainer --json "$OUT/trainer_variants.json" \
    --trainer-variants "$AB_VARIANTS"
  run profile 30 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 30 --steps 3
  (cd /tmp/rofjax_hlo 2>/dev/null && tar czf "$OUT/hlo.tgz" ./*step_fn*optimizations.txt)
  echo "cuBLASLt epilogues in the step: $(cat /tmp/rofjax_hlo/*step_fn*after_optimizations.txt 2>/dev/null \
    | grep -o 'epilogue":"[A-Z_]*"' | sort | uniq -c | tr '\n' ' ')"
  ;;
step)
  # PyTorch eager and torch.compile against rofjax's fastest step variant; BASE's rofjax step first where BASE is
  # there (against eager only), so that a change to the layers is timed against its own baseline in the same call.
  V=masked_logits+cudnn+one_hot+fused_dropout
  [ -d "$BASE/benchmarks" ] && run step_base 100 env PYTHONPATH="${PYTHONPATH:-}" python3 \
    "$BASE/benchmarks/encoder_step.py" --device gpu --rounds 3 --sections step --no-torch-compile \
    --json "$OUT/step_base.json" --variants $V
  run step 220 $B --sections step --json "$OUT/step.json" --variants $V
  ;;
loop)
  # The training program itself (host pipeline: jieba, packing, masking; metrics read back) against its bare step:
  # RoFormerV2 base masked LM, 32 × 512, packed rows of at most 8 documents, on the text corpus in .loopdata, batches
  # made in this process (a background thread) and by 8 worker processes (data.workers). BASE's tree first: its
  # loop read every step's metrics before dispatching the next. Needs `bash benchmarks/gpu_wheels.sh loop` here.
  M="--config configs/pretrain/tiny_mlm.py --config.data.dataset=text_corpus --config.data.data_dir=$PWD/.loopdata
    --config.model.preset=roformer_v2_chinese_char_base --config.model.num_layers=12 --config.model.hidden_size=768
    --config.model.num_heads=12 --config.model.intermediate_size=3072 --config.model.dtype=bfloat16
    --config.model.scan_layers=false --config.model.fused_attention_dropout=true --config.data.max_length=512
    --config.data.max_documents=8 --config.train.batch_size=32 --config.eval.examples=32 --steps 30 --warm 3
    --repeats 1"
  if ! python3 -c "import jieba, tensorflow_datasets, tensorboardX" 2>/dev/null || [ ! -s .loopdata/train.txt ]; then
    echo "== loop: skipped, run 'bash benchmarks/gpu_wheels.sh loop' here and carry .whl and .loopdata"; continue
  fi
  run loop_base 150 python3 benchmarks/train_loop.py --tree "$BASE" $M
  run loop 150 python3 benchmarks/train_loop.py $M
  run loop_workers 150 python3 benchmarks/train_loop.py $M --config.data.workers=8
  ;;
*) echo "unknown stage $STAGE (diagnose | measure | tests | lst | lstprof | ab | step | loop)"; exit 2 ;;
esac
done
