#pragma once
// The training loop shared by the seed, expert and baseline phases: data-parallel over the
// communicator it is given (and nothing else), gradient accumulation, AdamW, clipping,
// warmup + cosine, machine-parsable logs, per-domain validation, atomic checkpoints and
// exact resume (bitwise-identical losses on the same rank count).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/dataset.hpp"
#include "btm/model/model_file.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

struct TrainJob {
  std::string phase;   // seed | experts | baseline (stored in /meta/phase)
  std::string name;    // model name: "seed", the expert's name, "baseline"
  std::string domain;  // expert domain, "" otherwise
  std::filesystem::path file;            // the model file, also the checkpoint
  std::vector<std::string> domains;      // training mixture
  std::string mixing = "balanced";
  std::vector<std::string> valid_domains;  // validation loss reported per domain
  std::uint64_t tokens = 0;               // budget
  TrainConfig train;
  // MoE models: false freezes the experts' FFN weights (no gradients, no updates); the
  // router and every other parameter train.
  bool train_experts = true;
  std::optional<ModelConfig> model;  // the architecture; empty: the deck's [model] (finetune: the mixed model's)
};

// Where a fresh run starts (used only when job.file holds no checkpoint yet).
struct StartPoint {
  std::vector<float> params;  // host; empty: fresh initialisation from run.seed
  std::vector<float> m, v;    // AdamW moments to keep; empty: start at zero
  std::int64_t adam_steps = 0;  // optimizer steps behind m, v (their bias correction goes on from there)
  std::string parent;         // recorded in /meta/parent
};

enum class TrainOutcome { completed, already_complete, interrupted };

struct TrainControl {
  // Stop (checkpoint and return `interrupted`) once this many steps are done; -1: never.
  // SIGUSR1 and SIGTERM (e.g. `sbatch --signal=USR1@120`, scancel) have the same effect.
  std::int64_t stop_after_step = -1;
  // Tests of the non-finite guard: when it returns true for (model name, step), rank 0's
  // loss and summed gradients of that step are made NaN.
  std::function<bool(const std::string& model, std::int64_t step)> nonfinite_at;
};

// The deck's model with the vocabulary taken from the tokenizer when unset.
ModelConfig resolve_model_config(const Deck& deck, const Dataset& data);

TrainOutcome train_model(const Deck& deck, const Dataset& data, Backend& backend, const Comm& comm,
                         const TrainJob& job, const std::function<StartPoint()>& start,
                         const TrainControl& control = {});

// Mean token NLL of `model_params`-loaded model on spaced blocks of one domain's split,
// computed over `comm` (each rank a share of the blocks). Used for validation.
class Llama;
double mean_nll(Llama& model, const Dataset& data, const std::string& domain,
                const std::string& split, std::uint64_t max_blocks, int batch, const Comm& comm);

}  // namespace btm
