#pragma once
// Graceful stop on SIGUSR1 / SIGTERM (Slurm: `#SBATCH --signal=USR1@120`, scancel, time
// limit): the trainer checkpoints at the next step boundary and exits; a re-run resumes.
// run_phases holds one for the whole run, so the signal never kills a rank: outside
// training the run stops at the next safe point (between experts, between phases).
namespace btm {

// Installs the handlers, which then stay until the process exits: a signal that comes
// after the last safe point, while MPI and HDF5 shut down, finds the work done and must not
// kill the rank (Open MPI would report the finished run as failed).
class StopSignals {
 public:
  StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static bool requested();
};

}  // namespace btm
