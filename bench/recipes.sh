#!/usr/bin/env bash
# Which training recipe wins on the hard phantoms? 5-fold `ct3d cv` of each recipe on one hard
# phantom set (same folds, same seed, same preprocessing cache), then a table of validation
# accuracy and ROC AUC (mean ± sample SD over the folds) and wall time per epoch.
#
#   bench/recipes.sh                              # the BENCHMARKS.md run (≈ 40 min on 2 shared cores)
#   PER_CLASS=10 EPOCHS=2 FOLDS=2 bench/recipes.sh   # a smoke run (minutes)
#   RECIPES="seed resnet10_aug" OUT=/tmp/r bench/recipes.sh
#
# Recipes (every one: batch 4, learning rate 1e-3, BatchNorm momentum 0.9 — the quick demo's
# settings, since the example's 1e-4 / 0.99 need far more steps than 2 cores allow — early
# stopping on val_acc with patience 15, the example's):
#   seed         the Keras example's CNN and its rotation augmentation
#   seed_aug     the same CNN with the full pipeline: flip, affine, intensity, gamma, noise, blur
#   resnet10_aug 3D ResNet-10 (MedicalNet layout, stage widths 32,64,128,256, shortcut B) with
#                the full pipeline
# Rerunning resumes: finished folds are skipped (ct3d cv), so an interrupted run continues.
set -euo pipefail
cd "$(dirname "$0")/.."

per_class=${PER_CLASS:-30}
size_xy=${SIZE_XY:-128}
size=${SIZE:-48,48,48}
epochs=${EPOCHS:-15}
folds=${FOLDS:-5}
seed=${SEED:-1}
out=${OUT:-target/bench-recipes}
recipes=${RECIPES:-seed seed_aug resnet10_aug}
full_augment=flip,affine,intensity,gamma,noise,blur

# CT3D=/path/to/ct3d uses that binary (e.g. a copy, so that rebuilding the tree mid-run cannot
# swap it); by default the tree's release build.
if [ -n "${CT3D:-}" ]; then
  ct3d=$CT3D
else
  cargo build --release -q -p ct3d-cli
  ct3d=target/release/ct3d
fi

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "# $(rustc --version); $($ct3d --version)"
echo "# data: $per_class normal + $per_class abnormal hard phantoms (--size-xy $size_xy, seed $seed), input $size, $folds folds, ≤ $epochs epochs"

data=$out/data
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data"
  $ct3d synth --out "$data" --normal "$per_class" --abnormal "$per_class" --seed "$seed" \
    --size-xy "$size_xy" --difficulty hard
  touch "$data/.complete"
fi

common=(--data "$data" --cache "$out/cache" --folds "$folds" --seed "$seed" --size "$size"
  --epochs "$epochs" --batch-size 4 --learning-rate 1e-3 --batch-norm-momentum 0.9)

for recipe in $recipes; do
  case $recipe in
    seed) extra=() ;;
    seed_aug) extra=(--augment "$full_augment") ;;
    resnet10_aug) extra=(--arch resnet10 --widths 32,64,128,256 --shortcut B --augment "$full_augment") ;;
    *) echo "unknown recipe $recipe (known: seed seed_aug resnet10_aug)" >&2; exit 2 ;;
  esac
  echo "# recipe $recipe: ct3d cv ${common[*]} ${extra[*]}"
  start=$SECONDS
  $ct3d cv "${common[@]}" "${extra[@]}" --out "$out/$recipe" > "$out/$recipe.log" 2>&1 \
    || { echo "recipe $recipe failed; see $out/$recipe.log" >&2; tail -5 "$out/$recipe.log" >&2; exit 1; }
  echo "# recipe $recipe done in $((SECONDS - start)) s"
done

python3 bench/recipes_table.py "$out" $recipes
