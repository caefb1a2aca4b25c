#!/bin/bash
# Submits the whole BTM pipeline as dependent jobs: prepare + seed on one job, one array
# task per expert, then baseline, average, mix, finetune (BTX decks) and eval.
#   bash slurm/pipeline.sh inputs/quickstart.toml scripture fortunes python-docs go-code
set -euo pipefail
DECK=${1:?usage: slurm/pipeline.sh DECK EXPERT [EXPERT ...]}
shift
[[ $# -gt 0 ]] || { echo "name the experts (domains) to train" >&2; exit 2; }
here=$(dirname "$0")
seed=$(sbatch --parsable "$here/single_node.sbatch" "$DECK" --phases prepare,seed)
experts=$(EXPERTS="$*" sbatch --parsable --dependency=afterok:"$seed" --array=0-$(($# - 1)) \
            --export=ALL "$here/expert_array.sbatch" "$DECK")
final=$(sbatch --parsable --dependency=afterok:"$experts" "$here/single_node.sbatch" "$DECK" \
          --phases baseline,average,mix,finetune,eval)
echo "submitted: seed=$seed experts=$experts final=$final"
