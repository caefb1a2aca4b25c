#!/usr/bin/env bash
# Every run of the paper8-cpu study (analysis/REPLICATION.md), in order, then its tables and
# plots. Run from the repository root; finished phases are skipped, so re-running resumes.
#
#   analysis/replicate_paper8.sh                 # every folder, then the report
#   analysis/replicate_paper8.sh cbtm random     # only these folders (main must exist)
#   analysis/replicate_paper8.sh report          # only the tables and plots (analysis/replication/)
#
# Environment: BTM (the btm binary, default: btm on PATH), NP (MPI ranks, default 2),
# MPIRUN (default: mpirun --oversubscribe), PYTHON (default /usr/bin/python3), PHASES
# (comma-separated, passed to btm run --phases; default: the deck's, i.e. every phase).
#
# Folders (runs/paper8-cpu*), all from inputs/paper8-cpu.toml:
#   main     seed -> 8 domain experts -> dense baseline -> averages -> BTX mix + finetune
#            -> eval (BTM ensembles, averages, BTX)
#   cbtm     C-BTM: k = 8 balanced clusters, one expert each, routed top-1/top-2 ensembles
#   random   the same on 8 equal random splits (the C-BTM paper's baseline)
#   btxbase  the dense model matched to BTX's total FLOPs (seed + experts + finetune)
#   seed25   seed share 25% (400k seed tokens, 150k per expert), same total FLOPs
#   seed75   seed share 75% (1.2M seed tokens, 50k per expert), same total FLOPs
#            (the sweep compares with main's dense baseline: it trains none of its own)
# cbtm, random and btxbase branch from main's seed (seed.h5 and data.h5 copied: the seed
# phase finds it finished); the sweep folders train their own seeds on main's data.h5 (the
# same tokenizer and documents). Each folder's wall time goes to runs/<folder>/wall.txt.
set -euo pipefail

BTM=${BTM:-btm}
NP=${NP:-2}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
PYTHON=${PYTHON:-/usr/bin/python3}
PHASES=${PHASES:-}
DECK=inputs/paper8-cpu.toml
MAIN=runs/paper8-cpu

# The tokens of the dense model matched to BTX's total: btm check prints them.
btx_matched_tokens() {
  "$BTM" check "$DECK" --ranks "$NP" | sed -n 's/^  baseline.tokens = \([0-9]*\) matches btx.*/\1/p'
}

# run FOLDER [--set ...]: the deck in runs/FOLDER, its wall time appended to wall.txt.
run() {
  local dir=$1
  shift
  mkdir -p "$dir"
  local start
  start=$(date +%s)
  local phases=()
  [[ -z $PHASES ]] || phases=(--phases "$PHASES")
  $MPIRUN -n "$NP" "$BTM" run "$DECK" --set run.out_dir="$dir" "$@" "${phases[@]}"
  echo "start=$(date -u -d @"$start" +%FT%TZ) end=$(date -u +%FT%TZ) wall_s=$(($(date +%s) - start)) ranks=$NP" \
    "phases=${PHASES:-all}" >>"$dir/wall.txt"
}

# copy_from_main FOLDER FILE...: main's files into FOLDER, unless already there.
copy_from_main() {
  local dir=$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    if [[ ! -f $MAIN/$f ]]; then
      echo "replicate_paper8: $MAIN/$f missing: run 'main' first" >&2
      exit 2
    fi
    [[ -f $dir/$f ]] || cp "$MAIN/$f" "$dir/"
  done
}

# The settings every C-BTM folder shares: clusters instead of domains, no baseline or
# averages (main has them), routed ensembles only.
CBTM=(--set cluster.k=8 --set baseline.enabled=false --set average.uniform=false
  --set average.posterior=false --set 'mix.models=[]' --set eval.single_experts=none
  --set 'eval.ensembles=[{name="cbtm-top1", router="cluster", top_k=1}, {name="cbtm-top2", router="cluster", top_k=2}]')

# The seed-share sweep: the BTM ensemble and the uniform average at other seed shares. The
# dense model at the same total FLOPs is main's baseline (how BTM splits its compute between
# seed and experts does not change the dense model's), so these folders train none.
SWEEP=(--set baseline.enabled=false --set average.posterior=false --set 'mix.models=[]' --set eval.single_experts=none
  --set 'eval.ensembles=[{name="ensemble-prevtok", prior="cached", posterior="previous_token"}, {name="ensemble", prior="cached", posterior="exact"}]')

folder() {
  case $1 in
    main) run $MAIN ;;
    cbtm)
      copy_from_main $MAIN-cbtm data.h5 seed.h5
      run $MAIN-cbtm "${CBTM[@]}" --set cluster.method=balanced
      ;;
    random)
      copy_from_main $MAIN-random data.h5 seed.h5
      run $MAIN-random "${CBTM[@]}" --set cluster.method=random
      ;;
    btxbase)
      copy_from_main $MAIN-btxbase data.h5 seed.h5
      run $MAIN-btxbase --set baseline.tokens="$(btx_matched_tokens)" --set 'run.phases=["seed", "baseline", "eval"]' \
        --set average.uniform=false --set average.posterior=false --set 'mix.models=[]' --set 'eval.ensembles=[]'
      ;;
    seed25)
      copy_from_main $MAIN-seed25 data.h5
      run $MAIN-seed25 "${SWEEP[@]}" --set seed.tokens=400_000 --set experts.tokens=150_000
      ;;
    seed75)
      copy_from_main $MAIN-seed75 data.h5
      run $MAIN-seed75 "${SWEEP[@]}" --set seed.tokens=1_200_000 --set experts.tokens=50_000
      ;;
    report)
      $PYTHON analysis/replication_report.py runs --out analysis/replication
      $PYTHON analysis/report.py $MAIN --out analysis/replication/main
      $PYTHON analysis/report.py $MAIN-cbtm --out analysis/replication/cbtm
      ;;
    *)
      echo "replicate_paper8: unknown folder '$1' (main, cbtm, random, btxbase, seed25, seed75, report)" >&2
      exit 2
      ;;
  esac
}

if [[ $# -eq 0 ]]; then
  set -- main cbtm random btxbase seed25 seed75 report
fi
for f in "$@"; do folder "$f"; done
