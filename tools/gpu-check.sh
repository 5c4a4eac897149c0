#!/usr/bin/env bash
# The GPU checks, for a machine with CUDA, torch and no network (tools/gpu-wheels.sh fills .whl/ beforehand):
# installs voicewatch (this tree) and the wheels in .whl/ into /tmp/site, runs the tests that exercise CUDA
# (CPU vs CUDA embeddings, scores and segments), then `scan --workers` throughput and `voicewatch bench
# --quick` with the core on cuda.
# Results go to $OUT (default /tmp/gpu-check). Finishes in under 8 minutes on a 16-core H200 machine; each
# part has its own time limit so that one slow part cannot eat the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "install from .whl/ failed: run tools/gpu-wheels.sh where pip reaches PyPI"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target /tmp/site . || { echo "installing voicewatch from this tree failed"; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
cores=$(nproc)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
    | tee -a "$OUT/machine.txt"
echo "cpu cores: $cores" | tee -a "$OUT/machine.txt"
status=0
timeout 240 python3 -m pytest -q -p no:cacheprovider -rs --continue-on-collection-errors \
    tests/test_embedder.py tests/test_scorer.py tests/test_parallelscan.py tests/test_pipeline.py \
    "tests/test_training.py::test_the_shipped_model_loads_and_embeds_unit_vectors" 2>&1 | tee "$OUT/tests.log" \
    || status=1
(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 1 > "$OUT/gpu-utilisation.csv" &
 echo $! > /tmp/gpu-check-smi.pid)
timeout 120 python3 -m voicewatch bench --offline --quick --json --scan-workers $((cores - 1)) --speakers 100 \
    2>&1 | tee "$OUT/scan.json" || status=1
timeout 200 python3 -m voicewatch bench --quick --json --start-streams 512 --step-seconds 8 \
    --senders $((cores / 4)) 2>&1 | tee "$OUT/bench.json" || status=1
kill "$(cat /tmp/gpu-check-smi.pid)" 2>/dev/null
exit $status
