#!/usr/bin/env bash
# The GPU check: the engine against the reference loop on an NVIDIA GPU, in under 12 minutes,
# with random full-size models (CLIP ViT-B/32, ViT-B/16 and RN50, the 8192-token decoder and
# its encoder), so nothing is downloaded. Prints Markdown tables (256x256 without compiling,
# 512x512 with everything, what the init strength does, then each quality preset at its own
# size, and what screening a picture costs) to paste into bench/RESULTS.md with the device, date
# and versions printed above them.
#
#   bench/gpu_check.sh                # the project's packages are installed already
#   bench/gpu_check.sh WHEELS_DIR     # a machine without network that has torch only
#
# WHEELS_DIR holds wheels of the packages below, made on any machine with network by
#   python -m pip download --only-binary=:all: --no-deps -d wheels clip-anytorch DALL-E ftfy \
#       wcwidth regex tqdm attrs requests urllib3 idna certifi charset-normalizer pillow numpy \
#       safetensors 'setuptools<82'
# (add --python-version, --platform manylinux2014_x86_64 and --implementation cp when that
# machine differs); only what the GPU machine lacks is installed. If it lacks torchvision too,
# add the torchvision wheel that matches its torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
# What the benchmark imports, by module, and the package that brings it.
missing=$("$python" - <<'PY'
import importlib.util

needed = {
    "clip": "clip-anytorch", "dall_e": "DALL-E", "ftfy": "ftfy", "wcwidth": "wcwidth",
    "regex": "regex", "tqdm": "tqdm", "attr": "attrs", "requests": "requests",
    "urllib3": "urllib3", "idna": "idna", "certifi": "certifi",
    "charset_normalizer": "charset-normalizer", "PIL": "pillow", "numpy": "numpy",
    "safetensors": "safetensors", "pkg_resources": "setuptools<82",
    "torchvision": "torchvision",
}
print(" ".join(p for m, p in needed.items() if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    wheels=${1:?"missing $missing: pass a folder of wheels (see the top of $0)"}
    site=${TMPDIR:-/tmp}/pseudo-dalle-site
    # shellcheck disable=SC2086 # one word per package
    "$python" -m pip install --quiet --no-index --no-deps --find-links "$wheels" \
        --target "$site" $missing
    export PYTHONPATH="$site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "import sys, torch; torch.cuda.is_available() or sys.exit('no CUDA device visible to torch')"

date -u '+%Y-%m-%d %H:%M UTC'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 100 "$python" -m bench.bench_engine --device cuda --sizes 256 --cutouts 32 \
    --iterations 20 --jobs 1,4 --precisions bf16 --graphs --no-compile
timeout 180 "$python" -m bench.bench_engine --device cuda --sizes 512 --cutouts 32 \
    --iterations 20 --jobs 1 --precisions fp32,bf16 --graphs --compile
timeout 150 "$python" -m bench.bench_pictures --device cuda --size 256 --cutouts 32
timeout 200 "$python" -m bench.bench_quality --device cuda --steps 5 --warmup 2
timeout 60 "$python" -m bench.bench_screening --device cuda --steps 5
