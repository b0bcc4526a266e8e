#!/usr/bin/env bash
# The paper protocol on one accelerator (H100/H200, the JAX/Flax/Optax image
# without TensorFlow, no package registry, no hub), in one command:
#
#   python -m tools.accel_prepare               # CPU side, once: writes accel/
#   bash tools/accelerator_run.sh OUT           # device side; carry accel/
#   bash tools/accelerator_run.sh OUT --toy     # the same at toy size (CPU test)
#
# Runs benchmark.perf's accel section (ft-step examples/s and MFU of MiniLM,
# T5-small and ViT-B/16 in bfloat16), then Table 1's MovieLens columns with
# minilm_l6 under the paper preset (full ID training data, App. D.3 grids,
# the paper's rows without the harness's extra rows), and writes everything
# under OUT: perf_accel.json, dry_run.txt, table1.{csv,tex,hparams.json},
# table1.log, env.txt, and the run store (OUT/work). Sized to about 10 minutes
# on one H200 by ACCEL_SEEDS, ACCEL_GRID and ACCEL_GRID_LP (defaults below:
# see docs/performance.md for the sizing); rerunning resumes from OUT/work.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash tools/accelerator_run.sh OUT [--toy]}
TOY=0
[ "${2:-}" = "--toy" ] && TOY=1
A=${ACCEL_DIR:-accel}
PY=${PYTHON:-python3}
if [ ! -f "$A/prepared.json" ]; then
  echo "error: $A/prepared.json is missing; run 'python -m tools.accel_prepare' on the CPU side and carry $A/" >&2
  exit 2
fi
A=$(cd "$A" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Packages the image may lack: their carried wheels go on PYTHONPATH (pure
# Python imports from a wheel) only when the import fails.
extra=""
for pair in ml_collections:ml_collections yaml:PyYAML tqdm:tqdm jinja2:jinja2 markupsafe:MarkupSafe; do
  mod=${pair%%:*}; dist=${pair##*:}
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    whl=$(ls "$A"/wheels/"$dist"-*.whl "$A"/wheels/"${dist,,}"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$whl" ]; then
      echo "error: python has no $mod and $A/wheels holds no $dist wheel; rerun tools.accel_prepare without --no_wheels" >&2
      exit 2
    fi
    extra="$extra:$whl"
  fi
done
export PYTHONPATH="$PWD$extra${PYTHONPATH:+:$PYTHONPATH}"
export LEVI_CACHE="$A/cache"
export TF_CPP_MIN_LOG_LEVEL=3

if [ "$TOY" = 1 ]; then
  PRESET=smoke SEEDS=${ACCEL_SEEDS:-0} GRID=${ACCEL_GRID:-1e-3} GRID_LP=${ACCEL_GRID_LP:-1e-2}
  PERF=(--accel_batch 2 --accel_seq 16 --accel_backbones minilm_l6)
else
  PRESET=paper SEEDS=${ACCEL_SEEDS:-0} GRID=${ACCEL_GRID:-1e-4,1e-3} GRID_LP=${ACCEL_GRID_LP:-1e-2,1e-1}
  PERF=()
fi
{
  date -u
  "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv || true
  echo "preset $PRESET seeds $SEEDS lr_grid $GRID lr_grid_lp $GRID_LP"
  echo "PYTHONPATH additions:${extra:- none}"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

t0=$(date +%s)
"$PY" -m benchmark.perf --only accel "${PERF[@]}" --json "$OUT/perf_accel.json"
t1=$(date +%s)

ARGS=(--table 1 --dataset movielens_genre --backbone minilm_l6 --preset "$PRESET" --noextra_rows
      --seeds "$SEEDS" --config.protocol.lr_grid="$GRID" --config.protocol.lr_grid_lp="$GRID_LP"
      --config.backbones.minilm_l6.checkpoint="$A/minilm" --workdir "$OUT/work")
"$PY" run_benchmark.py "${ARGS[@]}" --dry_run > "$OUT/dry_run.txt" 2>&1
tail -n 3 "$OUT/dry_run.txt"
"$PY" run_benchmark.py "${ARGS[@]}" 2>&1 | tee "$OUT/table1.log"
t2=$(date +%s)
cp "$OUT"/work/tables/table1.* "$OUT"/
echo "perf accel $((t1 - t0)) s, table 1 $((t2 - t1)) s; wrote $OUT" | tee -a "$OUT/env.txt"
