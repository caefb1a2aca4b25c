#pragma once
// Training checkpoints: a model file (model/model_file.hpp) plus /optim/{m,v}/<name>,
// /train (step, total_steps, tokens, data seed and cursor, complete) and /metrics
// (per-step step, loss, lr, grad_norm, tokens_per_s; /metrics/valid/<domain> at the steps
// in /metrics/valid_step). Written atomically: a crash never leaves a half checkpoint.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "btm/data/loader.hpp"
#include "btm/model/model_file.hpp"

namespace btm {

struct TrainMetrics {
  std::vector<std::int64_t> step;
  std::vector<double> loss, lr, grad_norm, tokens_per_s;
  std::vector<double> aux_loss;  // MoE models: the load-balancing term of the objective (empty for dense)
  std::vector<std::int64_t> valid_step;
  std::map<std::string, std::vector<double>> valid;  // domain -> loss at valid_step
};

struct TrainState {
  std::int64_t step = 0;         // optimizer steps done
  std::int64_t total_steps = 0;  // planned
  // AdamW steps behind the moments this run started from (kept from its parent): the bias
  // correction of step s uses adam_step_offset + s.
  std::int64_t adam_step_offset = 0;
  std::uint64_t tokens = 0;      // training tokens consumed
  std::uint64_t data_seed = 0;
  std::vector<std::string> cursor_domains;
  LoaderCursor cursor;
  bool complete = false;
  TrainMetrics metrics;
};

struct Checkpoint {
  ModelFile model;
  TrainState state;
  std::vector<float> m, v;  // AdamW moments (empty: none saved)
};

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint);
Checkpoint load_checkpoint(const std::filesystem::path& path);
// Reads /train only (cheap); throws when the file is not a training checkpoint.
TrainState read_train_state(const std::filesystem::path& path);
// True when `path` exists and holds a finished model (complete training, or a model
// written in one go such as an average).
bool model_is_complete(const std::filesystem::path& path);

}  // namespace btm
