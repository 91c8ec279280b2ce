#!/usr/bin/env bash
# The GPU checks, as one script of at most 8 minutes for a lent GPU machine (run from the repository root):
#   1. the real-data experiment with OPERA-GT base in bf16, from a prepared folder (`acula experiment align
#      --prepare-only --prepared-dtype float16` made where the data and the teacher are), arms including masked
#      alignment; its results are written after every arm, so a run cut by the time limit keeps what it did;
#   2. the CUDA-marked tests (tests/test_cuda.py);
#   3. benchmarks/run.py's GPU sections: bf16 alignment steps one pass and two, extraction throughput, the
#      MedGemma-configuration teacher cost, into OUT/gpu/ (latest.json, and RESULTS.md's GPU section; merge with
#      `benchmarks/run.py --render benchmarks/results/latest.json OUT/gpu/latest.json`).
# Each part has its own time limit and a failure in one does not stop the next.
#
#   bash benchmarks/device_check.sh OUT [PREPARED]     (env: EXPERIMENT_S, TESTS_S, BENCH_S, DRY=1 for a CPU rehearsal)
set -u
OUT=${1:?usage: device_check.sh OUT [PREPARED]}
PREPARED=${2:-}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TQDM_MININTERVAL=15
EXPERIMENT_S=${EXPERIMENT_S:-200}
TESTS_S=${TESTS_S:-60}
BENCH_S=${BENCH_S:-200}
start=$(date +%s)
stamp() { echo "[device_check +$(( $(date +%s) - start ))s] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/machine.log"

if [ -n "$PREPARED" ]; then
  stamp "experiment (limit ${EXPERIMENT_S}s)"
  if [ "${DRY:-0}" = 1 ]; then  # CPU rehearsal: the same command at toy size
    EXTRA=(--device cpu --preset tiny --seeds 0 --epochs 1 --mam-epochs 1 --probe-seeds 0 --probe-epochs 2
           --probe-workers 2 --arms baseline,aligned,aligned_masked_tuned)
  else
    EXTRA=(--device cuda --mixed-precision bf16 --probe-workers 12)
  fi
  timeout "$EXPERIMENT_S" $PY -m acula.cli experiment align --config real-data --encoder opera-gt \
    --data-root /nonexistent --prepared "$PREPARED" --out /tmp/acula-experiment --max-per-subject 4 \
    --published-reports circor=training_data_report.csv "${EXTRA[@]}" ${EXPERIMENT_ARGS:-} \
    > "$OUT/experiment.log" 2>&1
  stamp "experiment exit $?"
  for f in results.json results.png; do  # table.md: acula.experiments.alignment.table(results)
    [ -f /tmp/acula-experiment/$f ] && cp /tmp/acula-experiment/$f "$OUT/experiment-$f"
  done
fi

stamp "CUDA tests (limit ${TESTS_S}s)"
{ cat "$OUT/machine.log"; rm "$OUT/machine.log"  # at most 8 files come back from a lent machine
  timeout "$TESTS_S" $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider; } > "$OUT/cuda-tests.log" 2>&1
stamp "CUDA tests exit $?"

if [ "${DRY:-0}" != 1 ]; then
  stamp "benchmarks (limit ${BENCH_S}s)"
  timeout "$BENCH_S" $PY benchmarks/run.py --quick --device cuda --out "$OUT/gpu" > "$OUT/bench.log" 2>&1
  stamp "benchmarks exit $?"
fi
stamp done
