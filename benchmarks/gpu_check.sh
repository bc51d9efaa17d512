#!/usr/bin/env bash
# One GPU session's checks, each section in its own process with its own time limit; inside the step and trainer
# sections every JAX run is a child process too, so an abort loses one row. Four logs and two JSON files go to
# ${OUT:-gpu_check} (the device tool returns at most 8 files). Limits add up to 9 minutes.
#
#   bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export JAX_PLATFORMS=cuda PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
run() {   # run NAME SECONDS COMMAND...: output to $OUT/NAME.log, one status line and the results to stdout
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s"
  grep -v '^    @\|^round\|^warmed\|Warning\|detach()\|return float\|^\*\*\*' "$OUT/$name.log" | tail -n 16
}
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
run tests 75 python3 -m pytest -q -n 0 -p no:cacheprovider tests/nn/test_fast_paths.py -k cudnn
B="python3 benchmarks/encoder_step.py --device gpu --rounds 3"
# Unrolled layers (1.5× faster than scanned on an H100): with cuDNN's kernel dropout (whose Trainer run has not
# finished yet anywhere), without attention dropout, and with the exact dropout; the trace shows what is left
# once the attention-dropout masks are gone.
T=unrolled+fused_dropout,unrolled+no_attn_dropout,unrolled
run trainer 200 $B --sections trainer --json "$OUT/trainer.json" --trainer-variants $T \
  --profile /tmp/rofjax_trace --profile-variant trainer:unrolled+no_attn_dropout
run profile 15 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 20
# PyTorch eager and torch.compile (70 s to compile) against the step variants, in one run.
V=all_logits+xla+one_hot,masked_logits+cudnn+one_hot+no_attn_dropout
run step 240 $B --sections step --json "$OUT/step.json" --variants $V
# The long-sequence section (GAU-α vs RoFormerV2 at 512/2048/8192) runs on its own when time allows:
#   $B --sections long --json "$OUT/long.json" --long-lengths 512,2048,8192
