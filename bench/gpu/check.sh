#!/usr/bin/env bash
# Every GPU check in one run, for a machine lent for a few minutes: the CUDA tests, the GPU benchmark, then the
# torchvision zoo sweep on the GPU until the deadline. Each stage's output lands in OUTDIR as it comes.
#
#   bash bench/gpu/check.sh OUTDIR [SECONDS] [ZOO_ARGS...]
#
# Runs from the source tree without installing (the lent image has torch, torchvision, timm and transformers, and
# nothing can be fetched there): rules/ and templates/ are linked where the installed package puts them.
set -u
out=${1:?OUTDIR}; deadline=$(( $(date +%s) + ${2:-420} )); shift 2 || shift $#
mkdir -p "$out"
[ -e auditor/rules ] || ln -s ../rules auditor/rules
[ -e auditor/templates ] || ln -s ../templates auditor/templates
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
# The lent image has no jsonschema (the tests' conftest validates every report with it): carry its wheels in an
# ignored .whl/ folder (the device tool's README: pip download --only-binary=:all: --python-version 3.12 ...
# jsonschema jsonschema-specifications referencing rpds-py) and name .whl in the run's carry.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && \
        export PYTHONPATH=$PWD:/tmp/site
fi
left() { echo $(( deadline - $(date +%s) )); }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  nproc; } > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

echo "== CUDA tests"
timeout 170 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
    "tests/test_in_place.py::test_in_place_on_cuda_restores_and_keeps_peak_memory_near_plain_training" \
    > "$out/tests.txt" 2>&1
echo "tests rc=$?"; tail -5 "$out/tests.txt"

echo "== GPU benchmark"
timeout 230 python3 bench/bench_probe.py --device cuda --repeats 3 --samples bench/gpu/resnet50,bench/gpu/gpt2 \
    > "$out/bench.txt" 2>&1
echo "bench rc=$?"; cat "$out/bench.txt" | tail -8

if [ "$(left)" -gt 30 ]; then
    echo "== zoo on the GPU for $(left) s"
    timeout "$(( $(left) - 10 ))" python3 bench/zoo.py --device cuda --json "$out/zoo.json" "$@" > "$out/zoo.txt" 2>&1
    echo "zoo rc=$?"; wc -l < "$out/zoo.txt"
fi
