#!/usr/bin/env bash
# The GPU check as one device-tool command (BENCHMARKS.md, GPU section): install the carried
# wheelhouse, then run each section of bench/gpu_check.py in its own process under its own time
# limit, so one that fails or overruns still leaves the others' figures. Writes under $OUT.
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nproc
  python3 -c "import torch, timm, optuna, open_clip, albumentations, fersearch; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__, \
'optuna', optuna.__version__, 'open_clip', open_clip.__version__)"
  for spec in ${SECTIONS:-steps:330 predict:60 memory:90 workers:110}; do
    section=${spec%%:*} limit=${spec##*:}
    start=$(date +%s)
    timeout -k 5 "$limit" python3 bench/gpu_check.py --device cuda --sections "$section" \
      --out "$OUT/$section"
    echo "## section $section: rc $? in $(($(date +%s) - start)) s (limit $limit s)"
  done
} 2>&1 | tee "$OUT/log.txt"
