#!/usr/bin/env bash
# The GPU benchmarks of bench/RESULTS.md on a lent H100/H200, through the `device` tool's calls.
#
# Here, on the development machine, once:
#   bash bench/gpu.sh prepare
# copies the three CIFAR-10 parts (/work/shared/data/cifar10, 45 MB each: one fits in a call)
# into .carry/ and downloads the wheels the device image lacks (optuna and its SQL stack) into
# .whl/; git ignores both.
#
# Then four `run` calls back to back (the machine goes back after 30 s idle, and with it
# everything stashed outside the checkout). A task has 15 minutes of device time in all, the
# machine's start included, and one call may run 600 s; this plan needs about 13:
#   1. carry [".whl", ".carry/cifar10.npz.xz.part00"]  bash bench/gpu.sh stash             ~10 s
#   2. carry [".carry/cifar10.npz.xz.part01"]          bash bench/gpu.sh stash             ~10 s
#   3. carry [".carry/cifar10.npz.xz.part02"]
#        bash bench/gpu.sh stash unpack env fast94 davidnet search-start                ~150 s
#   4.   bash bench/gpu.sh search-retrain   (waits out the 480 s search, then retrains)  ~450 s
#   (spare time only) bash bench/gpu.sh fast94-compile tricks     (~40 s, ~3 min)
# A second plan, for a lend after the first has run (issue: `auto --time T` against the best
# preset; one arm at T = 10 min is all that fits in a lend, the others need a lend each):
#   1-2. as above
#   3. carry [".carry/cifar10.npz.xz.part02"]  bash bench/gpu.sh stash unpack env auto-start  ~40 s
#   4.   bash bench/gpu.sh auto-collect   (waits up to 540 s for the arm, copies its files)
#   5.   the same again where T outlasted call 4                            ~T + 60 s in all
# with ARM=auto|preset|today (default auto), SEED (0) and AUTO_TIME (600) set in both calls;
# the rows go into bench/auto_results.jsonl, the table into RESULTS.md.
# The search starts only after fast94 and davidnet are timed, so nothing shares the GPU with
# them; it runs in its own session between calls 3 and 4. Each call's markdown, JSON and logs
# come back from $OUT (8 files at most per call); paste the .md files into bench/RESULTS.md.
#
# Without the device tool (any CUDA machine with the data at $DATA and the package installed):
#   DATA=~/data/cifar10.npz OUT=bench-out bash bench/gpu.sh env fast94 davidnet search-start search-retrain
set -euo pipefail

WORK=${WORK:-/root/cifar-search-gpu}  # outside the checkout: survives between calls while warm
DATA=${DATA:-$WORK/data/cifar10.npz}
OUT=${OUT:-$WORK/out}
SHA256=230c399fa45afdfcc1ef5e09d1e37e078dc426b4ef8f90a43b2f4d145c00e5d0  # cifar10.npz
PY=${PYTHON:-python3}
read -r -a EXTRA <<< "${BENCH_ARGS:-}"  # e.g. BENCH_ARGS="--tiny" to try this script on a CPU
export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$WORK/parts" "$WORK/runs" "$OUT"

step_prepare() {  # on the development machine
  mkdir -p .carry .whl
  cp /work/shared/data/cifar10/cifar10.npz.xz.part0? .carry/
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3 SQLAlchemy==2.1.9 \
    torchinfo==1.8.0
  du -sh .carry .whl
}

step_stash() {  # parts and wheels carried in this call -> $WORK
  if compgen -G ".carry/cifar10.npz.xz.part*" >/dev/null; then
    cp .carry/cifar10.npz.xz.part* "$WORK/parts/"
  fi
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" .whl/*.whl
  fi
  ls -la "$WORK/parts"
}

step_unpack() {
  mkdir -p "$(dirname "$DATA")"
  if [[ -f $DATA ]] && [[ $(sha256sum "$DATA" | cut -d' ' -f1) == "$SHA256" ]]; then
    echo "$DATA: there, verified"; return
  fi
  cat "$WORK"/parts/cifar10.npz.xz.part0{0,1,2} | xz -dc > "$DATA.tmp"
  [[ $(sha256sum "$DATA.tmp" | cut -d' ' -f1) == "$SHA256" ]] || { echo "checksum mismatch" >&2; exit 1; }
  mv "$DATA.tmp" "$DATA"; echo "$DATA: written, verified"
}

step_env() {
  { date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
      || echo "no nvidia-smi"
    lscpu | grep -E "Model name|^CPU\(s\)"
    $PY -c "import torch, optuna, cifar_search; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'optuna', optuna.__version__)"
  } 2>&1 | tee "$OUT/env.txt"
}

bench() {  # NAME ARGS...: bench/bench_gpu.py ARGS, markdown and JSON to $OUT/NAME.*
  local name=$1; shift
  $PY bench/bench_gpu.py "$@" "${EXTRA[@]}" --data "$DATA" --json "$OUT/$name.json" 2>&1 \
    | tee "$OUT/$name.md"
}

step_fast94() { bench fast94 fast94 --seeds 5; }
step_fast94_compile() { bench fast94-compile fast94 --seeds 5 --compile; }
step_tricks() {  # each fast94 trick switched off in turn, 2 seeds, on the validation split
  $PY bench/bench_tricks.py --data "$DATA" --seeds 0,1 --json "$OUT/tricks.json" 2>&1 \
    | tee "$OUT/tricks.md"
}
step_davidnet() { bench davidnet davidnet --epochs 24 --peak-tflops 989; }

step_search_start() {  # in its own session, so it runs on between calls
  rm -rf "$WORK/runs/search"
  setsid nohup $PY bench/bench_gpu.py search --step run --timeout 480 --out "$WORK/runs/search" \
    "${EXTRA[@]}" --data "$DATA" > "$WORK/runs/search-run.out" 2>&1 < /dev/null &
  echo "search started at $(date -u +%T); bench/gpu.sh search-retrain collects it"
}

step_search_retrain() {
  wait_for "$WORK/runs/search/run.json" 540
  cp "$WORK/runs/search-run.out" "$OUT/"
  bench search search --step retrain --timeout 480 --out "$WORK/runs/search"
  cp "$WORK/runs/search/search.log" "$WORK/runs/search/retrain-best/metrics.json" "$OUT/" || true
  cp "$WORK/runs/search/retrain-best/MODEL.md" "$OUT/search-MODEL.md" || true
}

ARM=${ARM:-auto} SEED=${SEED:-0} AUTO_TIME=${AUTO_TIME:-600}
AUTO_DIR=$WORK/runs/auto-$ARM-seed$SEED

step_auto_start() {  # bench/bench_auto.py ARM at T = AUTO_TIME, in its own session
  rm -rf "$AUTO_DIR"
  mkdir -p "$AUTO_DIR"
  setsid nohup $PY bench/bench_auto.py --arm "$ARM" --seed "$SEED" --time "$AUTO_TIME" \
    --data "$DATA" --work "$AUTO_DIR/work" --results "$AUTO_DIR/row.jsonl" \
    > "$AUTO_DIR/bench.out" 2>&1 < /dev/null &
  echo $! > "$AUTO_DIR/pid"
  echo "$ARM (seed $SEED, T = $AUTO_TIME s) started at $(date -u +%T); bench/gpu.sh auto-collect collects it"
}

step_auto_collect() {
  local run=$AUTO_DIR/work/$ARM-seed$SEED-T$AUTO_TIME
  if ! wait_for "$AUTO_DIR/row.jsonl" 540 "$(cat "$AUTO_DIR/pid" 2>/dev/null || true)"; then
    cp "$AUTO_DIR/bench.out" "$OUT/" || true
    cp "$run/log.txt" "$OUT/auto-$ARM-seed$SEED-log.txt" 2>/dev/null || true
    tail -n 5 "$AUTO_DIR/bench.out" "$run/log.txt" 2>/dev/null || true
    return 1
  fi
  cp "$AUTO_DIR/row.jsonl" "$OUT/auto-$ARM-seed$SEED.jsonl"
  cp "$run/log.txt" "$OUT/auto-$ARM-seed$SEED-log.txt"
  cp "$run/model/metrics.json" "$OUT/auto-$ARM-seed$SEED-metrics.json" || true
  cp "$run/model/MODEL.md" "$OUT/auto-$ARM-seed$SEED-MODEL.md" || true
  $PY bench/bench_auto.py --table --results "$AUTO_DIR/row.jsonl" | tee "$OUT/auto-$ARM-seed$SEED.md"
}

wait_for() {  # FILE SECONDS [PID: give up as soon as that process has ended without FILE]
  local i
  for ((i = 0; i < $2; i += 5)); do
    [[ -f $1 ]] && return 0
    if [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null; then
      [[ -f $1 ]] && return 0
      echo "the arm ended without $1: it failed (its log follows)" >&2; return 1
    fi
    sleep 5
  done
  echo "not there after $2 s: $1 (still running? call the step again)" >&2; return 1
}

for step in "$@"; do
  echo "== $step"
  "step_${step//-/_}"
done
