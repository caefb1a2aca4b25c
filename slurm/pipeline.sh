#!/bin/bash
# Submits a deck's pipeline to Slurm and prints the job ids (key=value).
#   slurm/pipeline.sh DECK [btm run options]
#       one job, every phase (slurm/single_node.sbatch)
#   slurm/pipeline.sh DECK [btm run options] -- EXPERT [EXPERT ...]
#       prepare (+ cluster) + seed; then one array task per expert and, at the same time, the baseline
#       (it needs only the seed); then average, mix, finetune (BTX decks) and eval once both are done
# Extra sbatch options: BTM_SBATCH_ARGS (every job), BTM_EXPERT_SBATCH_ARGS (the array
# tasks, e.g. "-n 4" for four ranks per expert). BTM_ENV, BTM: see slurm/job_step.sh.
set -euo pipefail
DECK=${1:?usage: slurm/pipeline.sh DECK [btm run options] [-- EXPERT ...]}
shift
opts=()
while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
experts=()
if [[ $# -gt 0 ]]; then shift; experts=("$@"); [[ ${#experts[@]} -gt 0 ]] || { echo "name the experts after --" >&2; exit 2; }; fi
here=$(cd "$(dirname "$0")" && pwd)
export BTM_ROOT=${BTM_ROOT:-$(dirname "$here")}
read -r -a common <<<"${BTM_SBATCH_ARGS:-}"
read -r -a expert_args <<<"${BTM_EXPERT_SBATCH_ARGS:-}"
submit() { sbatch --parsable --export=ALL "${common[@]}" "$@"; }

if [[ ${#experts[@]} -eq 0 ]]; then
  echo "job=$(submit "$here/single_node.sbatch" "$DECK" "${opts[@]}")"
  exit 0
fi
seed=$(submit "$here/single_node.sbatch" "$DECK" "${opts[@]}" --phases prepare,cluster,seed)
array=$(EXPERTS="${experts[*]}" submit "${expert_args[@]}" --dependency=afterok:"$seed" \
          --array=0-$((${#experts[@]} - 1)) "$here/expert_array.sbatch" "$DECK" "${opts[@]}")
baseline=$(submit --dependency=afterok:"$seed" "$here/single_node.sbatch" "$DECK" "${opts[@]}" --phases baseline)
final=$(submit --dependency=afterok:"$array":"$baseline" "$here/single_node.sbatch" "$DECK" "${opts[@]}" \
          --phases average,mix,finetune,eval)
echo "seed=$seed experts=$array baseline=$baseline final=$final"
