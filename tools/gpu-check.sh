#!/usr/bin/env bash
# gpu-check: build and test cloob-server on the lent GPU machine (PyTorch 2.x with CUDA, no Debian
# C libraries, no network) in a few minutes, and measure GPU throughput.
# Here:  tools/fetch-gpu-debs.sh            (once; fills .deb/)
# There: make gpu-check   (with .deb carried)   -> results in $OUT (or build/gpu-check/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-build/gpu-check}
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/gpu-check.log") 2>&1
PY=${PYTHON:-python3}
SYSROOT=/tmp/cloob-debroot
mkdir -p "$SYSROOT"
for f in .deb/*.deb; do dpkg -x "$f" "$SYSROOT"; done
ML=$SYSROOT/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$SYSROOT PKG_CONFIG_PATH=$ML/pkgconfig:$SYSROOT/usr/share/pkgconfig
export LD_LIBRARY_PATH=$ML${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=$SYSROOT/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}
TORCH_DIR=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__))')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c 'import torch;print("torch",torch.__version__,"cuda",torch.version.cuda,torch.cuda.get_device_name(0))'
B=build-gpu
MK="make -j16 BUILD=$B PYTHON=$PY TORCH_DIR=$TORCH_DIR CFLAGS=-I$SYSROOT/usr/include CXXFLAGS=-I$SYSROOT/usr/include LDFLAGS=-L$ML"
time $MK $B/cloob-server $B/cloob-embed $B/bench_model $B/libcloob_spm.so $B/tests/shim/test_model $B/tests/shim/test_tokenizer
CLOOB_SHARED=/nonexistent $B/tests/shim/test_tokenizer || echo "(tokenizer self-test needs ../shared for some checks)"
SPM=.deb/google_sp.model
$PY tools/export_model.py --random tiny --seed 1 --tokenizer $SPM --out $B/models/tiny
$PY tools/export_model.py --random full --seed 1 --tokenizer $SPM --out $B/models/full
CLOOB_TINY_MODEL=$B/models/tiny CLOOB_TEST_DEVICE=cuda $B/tests/shim/test_model
# CPU vs CUDA (fp32, fp16) agreement on the full model, one image and one text
for dev in cpu cuda; do
  $B/cloob-embed --model $B/models/full --device $dev --raw --text 犬の写真 > "$OUTDIR/emb-$dev.json"
done
$B/cloob-embed --model $B/models/full --device cuda --half --raw --text 犬の写真 > "$OUTDIR/emb-cuda-half.json"
$PY - "$OUTDIR" <<'PYEOF'
import json, sys, math
d = sys.argv[1]
def vec(n): return json.load(open(f"{d}/emb-{n}.json"))["texts"][0]["embedding"]
def cos(a, b): return sum(x*y for x, y in zip(a, b)) / math.sqrt(sum(x*x for x in a) * sum(y*y for y in b))
c = vec("cpu")
print("cos(cpu, cuda fp32) =", cos(c, vec("cuda")), " cos(cpu, cuda fp16) =", cos(c, vec("cuda-half")))
PYEOF
# The start-up self-test on the GPU in fp32 and fp16: its worst cosines are what the tolerances in
# tools/export_model.py (0.9999 / 0.999) have to cover. A failure is reported, not fatal here.
for half in "" --half; do
  $B/cloob-embed --model $B/models/full --device cuda $half --selftest > "$OUTDIR/selftest-cuda${half:+-half}.json" \
    || echo "gpu-check: self-test FAILED on cuda $half (see $OUTDIR/selftest-cuda${half:+-half}.json)"
done
$B/bench_model --model $B/models/full --device cuda --image-batches 1,8,32,64 --text-batches 1,64,256 --seconds 3 | tee "$OUTDIR/bench-fp32.jsonl"
echo "gpu-check: done"
