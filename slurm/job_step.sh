# Sourced by the sbatch scripts: prepares the environment, then `btm_step [srun options]
# -- [btm run arguments]` runs btm as one job step over the allocation; when btm stops
# with a checkpoint (status 75: stop signal, time limit) the job requeues itself to resume.
#
#   BTM_ENV   a file sourced first: what makes btm and its libraries available, e.g.
#             `spack env activate /path/to/btm/spack/cpu` or `module load ...` lines
#   BTM       the btm binary (default: build/btm in the submit folder)
#   SLURM_MPI_TYPE  srun's PMI (default pmix: Open MPI's MPI_Init needs it under srun)
#   HDF5_USE_FILE_LOCKING  default FALSE: btm writes every file by atomic rename, and
#             HDF5's locks fail or are incoherent on Lustre/GPFS without the flock mount
if [[ -n ${BTM_ENV:-} ]]; then
  [[ -r $BTM_ENV ]] || { echo "BTM_ENV=$BTM_ENV is not a readable file" >&2; exit 2; }
  # shellcheck disable=SC1090
  source "$BTM_ENV" || { echo "sourcing BTM_ENV=$BTM_ENV failed" >&2; exit 2; }
fi
export SLURM_MPI_TYPE=${SLURM_MPI_TYPE:-pmix}
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
BTM=${BTM:-build/btm}

# Ranks: what the job asked for (sbatch -n / --ntasks-per-node), else one per allocated
# CPU (SLURM_JOB_CPUS_PER_NODE: "16", "16(x4)" or "16(x2),8") and --cpus-per-task.
btm_default_ranks() {
  local part n reps total=0
  local -a parts
  IFS=, read -ra parts <<<"${SLURM_JOB_CPUS_PER_NODE:-1}"
  for part in "${parts[@]}"; do
    n=${part%%(*}
    reps=1
    if [[ $part == *"(x"* ]]; then reps=${part#*(x}; reps=${reps%)}; fi
    total=$((total + n * reps))
  done
  echo $((total / ${SLURM_CPUS_PER_TASK:-1}))
}

btm_step() {
  local -a srun_args=()
  while [[ $# -gt 0 && $1 != -- ]]; do srun_args+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  if [[ -z ${SLURM_NTASKS:-} && ! " ${srun_args[*]} " =~ " --ntasks" ]]; then
    srun_args+=(--ntasks="$(btm_default_ranks)")
  fi
  echo "btm_step job=${SLURM_JOB_ID:-} restarts=${SLURM_RESTART_COUNT:-0} mpi=$SLURM_MPI_TYPE srun ${srun_args[*]}"
  srun "${srun_args[@]}" "$BTM" run "$@"
  local status=$?
  if [[ $status -eq 75 ]]; then
    echo "btm stopped with a checkpoint; requeueing job ${SLURM_JOB_ID} to resume"
    scontrol requeue "$SLURM_JOB_ID" || echo "scontrol requeue failed: run the job again to resume" >&2
  fi
  return $status
}
