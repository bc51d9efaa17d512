#!/usr/bin/env bash
# One GPU session's checks, each in its own process with its own time limit, so that one abort or overrun does not
# lose the rest; six logs and two JSON files go to ${OUT:-gpu_check} (the device tool returns at most 8 files).
#
#   bash benchmarks/gpu_check.sh            # not yet run as a whole; its limits add up to 9 min (11.5 with the rerun)
set -u
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export JAX_PLATFORMS=cuda PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
run() {   # run NAME SECONDS COMMAND...: output to $OUT/NAME.log, one status line to stdout
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s"
  grep -v '^    @\|^round\|Warning\|detach()\|return float' "$OUT/$name.log" | tail -n 14
}
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
run tests 100 python3 -m pytest -q -n 0 -p no:cacheprovider tests/nn/test_fast_paths.py
B="python3 benchmarks/encoder_step.py --device gpu --rounds 4"
V=all_logits+xla+gather,all_logits+cudnn+one_hot+fused_dropout,masked_logits+cudnn+one_hot+fused_dropout
V=$V,masked_logits+cudnn+one_hot+no_attn_dropout
run step 180 $B --sections step --json "$OUT/step.json" --profile /tmp/rofjax_trace --variants $V
# cuDNN attention once aborted inside scanned layers with kernel dropout; if the scanned run dies, unroll.
python3 -c "import json, sys; step = json.load(open(sys.argv[1])).get('step', {}); \
sys.exit(not any(name.startswith('rofjax') for name in step))" "$OUT/step.json" 2>/dev/null ||
  run step 150 $B --sections step --json "$OUT/step.json" --profile /tmp/rofjax_trace --variants $V --unrolled
run profile 30 python3 benchmarks/profile_summary.py /tmp/rofjax_trace --top 25
run trainer 90 $B --sections trainer
run long 90 $B --sections long --json "$OUT/long.json"
run compile 45 $B --sections compile
