#!/usr/bin/env bash
# The model-improvement run on one lent GPU (issue 10), one call of at most ~9 minutes:
#   phase A (parallel, equal wall-clock budgets): the 2x-wide full-resolution teacher and the
#           student ablations (stem stride 2 vs 1, +DAVIS data, box-aware loss, PicoSAM2 blocks);
#   teacher soft masks for every training instance (flip TTA);
#   phase C (parallel): from the better phase-A student of each stem, the same budget again
#           with the teacher (distillation) and without it (ground truth only).
# Input: .gpu_carry/packed/*.npz from tools/gpu_train/pack_stores.py. Output: tarballs in $OUT.
# The shipped model's run (commit 706807a) chose best.pt on packed dev-val crops; the one evaluator
# (picosam3_train.evaluate) now reads the images themselves, which are not carried, so runs here
# train without periodic evaluation and keep last.pt; evaluate them afterwards where the data is.
#   bash tools/gpu_train/run_gpu.sh [PHASE_A_MIN] [PHASE_C_MIN]
set -u
A_MIN=${1:-3.8}
C_MIN=${2:-3.3}
WORKERS=${WORKERS:-2}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_out}
RUNS=${RUNS:-/tmp/gpu_runs}
STORES=/tmp/gpu_stores
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$RUNS/gpu.txt"
# DataLoader workers hand batches over through /dev/shm (~40 MB a batch, a few in flight per run).
shm_mb=$(df -m --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
echo "cores $(nproc), /dev/shm ${shm_mb:-?} MB free" | tee -a "$RUNS/gpu.txt"
if [ "${shm_mb:-0}" -lt 4096 ]; then WORKERS=0; echo "small /dev/shm: batches built in the training processes"; fi
$PY tools/gpu_train/pack_stores.py unpack .gpu_carry/packed "$STORES" || exit 1
COCO=$STORES/instances_train2017_context
PF=$STORES/instances_pennfudan_context
DAVIS=$STORES/instances_davis2016_context
NEW_DATA="$COCO,$PF,$DAVIS"

train() {  # name minutes extra --set args...
  local name=$1 minutes=$2; shift 2
  $PY -m picosam3_train.cli train --config picosam3_train/configs/picosam3.yaml \
    --set out_dir="$RUNS/$name" --set val_dataset="" --set train_datasets="$NEW_DATA" \
    --set time_budget_min="$minutes" --set epochs=100000 --set eval_every=0 --set threads=1 \
    --set loader_workers="$WORKERS" --set batch_size="${BATCH:-128}" --set lr=0.004 --set weight_decay=0.0005 \
    --set box_margin=0.05 --set device="${DEVICE:-cuda}" ${EXTRA_SET:-} "$@" > "$RUNS/$name.log" 2>&1
  echo "$name exit $? $(date +%T)"
}

echo "phase A start $(date +%T)"
train teacher_w2_s1 "$A_MIN" --set width_mult=2.0 --set stem_stride=1 &
train a_s2 "$A_MIN" &
if [ "${ABLATIONS:-1}" = 1 ]; then  # ABLATIONS=0: only what the default model needs
  train a_s1 "$A_MIN" --set stem_stride=1 &
  train a_s2_olddata "$A_MIN" --set train_datasets="$COCO,$PF" &
  train a_s2_nomargin "$A_MIN" --set box_margin=-1 &
  train a_pico2 "$A_MIN" --set model=picosam2 &
fi
wait
echo "teacher cache $(date +%T)"
$PY tools/gpu_train/cache_teacher_on_stores.py "$RUNS/teacher_w2_s1/last.pt" "$COCO" "$PF" "$DAVIS" \
  --out "$RUNS/teacher_caches" > "$RUNS/teacher_cache.log" 2>&1 || echo "teacher cache FAILED"
CACHES="$RUNS/teacher_caches/instances_train2017_context,$RUNS/teacher_caches/instances_pennfudan_context,$RUNS/teacher_caches/instances_davis2016_context"

echo "phase C start $(date +%T)"
stems="s2 s1"; [ "${ABLATIONS:-1}" = 1 ] || stems=s2
for stem in $stems; do
  init="$RUNS/a_$stem/last.pt"
  common=(--set init_checkpoint="$init" --set stem_stride="${stem#s}" --set lr=0.0015 --set warmup_steps=30)
  train "c_${stem}_distill" "$C_MIN" "${common[@]}" --set teacher_caches="$CACHES" &
  train "c_${stem}_gt" "$C_MIN" "${common[@]}" &
done
wait
echo "done $(date +%T)"
# Results: metrics, summaries and logs of every run, and the checkpoints (2 per file: 16 MiB cap),
# as model-only copies (last.pt also holds the optimizer state, three times the weights).
(cd "$RUNS" && tar czf "$OUT/results.tgz" gpu.txt ./*.log */summary.json */metrics.jsonl */config.yaml \
  teacher_caches/*/meta.json 2>/dev/null)
slim() {  # run -> run/model.pt: the weights and config of last.pt, no optimizer
  $PY -c 'import sys; from picosam3_train.checkpoint import load_checkpoint, save_checkpoint
m, c, e = load_checkpoint(sys.argv[1]); save_checkpoint(sys.argv[2], m, c, {k: v for k, v in e.items() if k != "optimizer"})' \
    "$RUNS/$1/last.pt" "$RUNS/$1/model.pt"
}
pack() {
  local out=$1 files=(); shift
  for r in "$@"; do [ -f "$RUNS/$r/last.pt" ] && slim "$r" && files+=("$r/model.pt"); done
  [ ${#files[@]} -gt 0 ] && (cd "$RUNS" && tar cf "$OUT/$out" "${files[@]}")
}
pack ckpt_a1.tar a_s2 a_s1
pack ckpt_a2.tar a_s2_nomargin a_s2_olddata
pack ckpt_a3.tar a_pico2
pack ckpt_c1.tar c_s2_distill c_s2_gt
pack ckpt_c2.tar c_s1_distill c_s1_gt
ls -la "$OUT"
for r in "$RUNS"/*/summary.json; do echo "$r: $(tr -d '\n ' < "$r")"; done
