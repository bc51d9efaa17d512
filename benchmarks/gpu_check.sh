#!/usr/bin/env bash
# One GPU session's checks, each section in its own process with its own time limit; inside the step and trainer
# sections every JAX run is a child process too, so an abort loses one row. Logs, JSON, the profile summary and the
# profiled step's HLO go to ${OUT:-gpu_check} (the device tool returns at most 8 files).
#
#   bash benchmarks/gpu_check.sh diagnose   # Trainer variants + a profile and the HLO of the best one (~5 min)
#   bash benchmarks/gpu_check.sh measure    # Trainer variants, PyTorch eager / torch.compile vs rofjax (~7.5 min)
set -u
STAGE=${1:-measure}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export JAX_PLATFORMS=cuda PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
run() {   # run NAME SECONDS COMMAND...: output to $OUT/NAME.log, one status line and the results to stdout
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s"
  grep -v '^    @\|^round\|^warmed\|Warning\|detach()\|return float\|^\*\*\*\|^tracing' "$OUT/$name.log" | tail -n 16
}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
B="python3 benchmarks/encoder_step.py --device gpu --rounds 3"
case $STAGE in
diagnose)
  # The best step so far (unrolled, cuDNN flash attention without attention dropout) traced and its HLO kept;
  # then what the hidden-dropout masks cost, cuDNN's kernel dropout in the Trainer, and Triton GEMMs back on.
  T=unrolled+no_attn_dropout,unrolled+fused_dropout,unrolled+no_dropout,unrolled+no_attn_dropout+triton
  run trainer 300 $B --sections trainer --json "$OUT/trainer.json" --trainer-variants $T \
    --profile /tmp/rofjax_trace --profile-variant trainer:unrolled+no_attn_dropout --dump-hlo /tmp/rofjax_hlo
  run profile 40 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 45 --steps 3
  (cd /tmp/rofjax_hlo 2>/dev/null && tar czf "$OUT/hlo.tgz" ./*step_fn*optimizations.txt)
  find /tmp/rofjax_trace -name 'perfetto_trace.json.gz' -size -15M -exec cp {} "$OUT/" \;
  ;;
measure)
  # rofjax's GPU defaults (cuBLAS matmuls; command buffers without cuDNN under kernel dropout) in one process:
  # packed rows of up to 32 and 4 documents (cuDNN's segment layout) against unpacked rows (padding lengths).
  T=unrolled+no_attn_dropout,unrolled+no_attn_dropout+docs1,unrolled+no_attn_dropout+docs4,unrolled+docs1
  run trainer 130 $B --sections trainer --no-isolate --json "$OUT/trainer.json" --trainer-variants $T
  # cuDNN's kernel dropout, each in its own process (it aborted inside command buffers before).
  run trainer_fused 90 $B --sections trainer --json "$OUT/trainer_fused.json" \
    --trainer-variants unrolled+fused_dropout+docs1,unrolled+fused_dropout
  # PyTorch eager and torch.compile (70 s to compile) against the step variants, in one run.
  V=masked_logits+cudnn+one_hot+fused_dropout,all_logits+cudnn+one_hot+fused_dropout,masked_logits+xla+one_hot
  run step 230 $B --sections step --json "$OUT/step.json" --variants $V
  ;;
*) echo "unknown stage $STAGE (diagnose | measure)"; exit 2 ;;
esac
