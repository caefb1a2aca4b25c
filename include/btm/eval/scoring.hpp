#pragma once
// Token scoring for evaluation (ARCHITECTURE, Evaluation and Process layout): dense models over
// every rank of a communicator, experts on the 2-D grid (expert group x rank in group).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/model/llama.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

// The blocks of one domain's split that evaluation scores: every non-overlapping
// `context`-token block, or, when max_tokens > 0, max(1, max_tokens / context) evenly
// spaced ones (spaced_blocks).
std::vector<std::uint64_t> eval_blocks(const Dataset& data, const std::string& domain, const std::string& split,
                                       int context, std::uint64_t max_tokens);

// Block range [begin, end) of `rank` of `ranks` when n blocks are split in contiguous chunks.
struct BlockRange {
  std::size_t begin = 0, end = 0;
};
BlockRange block_share(std::size_t n, int rank, int ranks);

// Loads model files into one Llama per architecture on this process and checks that each
// fits the data (vocabulary) and the evaluation context. Loading the file already loaded is
// free. Keeps a record of what it loaded and ran, so tests can see which models were used.
class ModelPool {
 public:
  ModelPool(Backend& backend, int vocab_size, int context);
  ~ModelPool();
  Llama& load(const std::filesystem::path& file);

  int context() const { return context_; }
  // Files read from disk, in order (this process).
  const std::vector<std::string>& loads() const { return loads_; }
  // "file|domain|split|blocks" for every scoring pass this process ran.
  const std::vector<std::string>& runs() const { return runs_; }
  void record_run(const std::filesystem::path& file, const std::string& domain, const std::string& split,
                  std::size_t blocks);

 private:
  Backend& backend_;
  int vocab_size_;
  int context_;
  std::map<std::string, std::unique_ptr<Llama>> models_;  // by architecture hash
  std::map<std::string, std::string> current_;             // architecture -> loaded file
  std::vector<std::string> loads_, runs_;
};

struct NllSum {
  double nll = 0;            // sum of token NLLs (nats)
  std::uint64_t tokens = 0;  // targets
};

// Sum of token NLLs of one model over `blocks`, which are split across the ranks of
// `comm`; the sums are reduced over `comm` (collective).
NllSum score_dense(ModelPool& pool, const std::filesystem::path& file, const Dataset& data,
                   const std::string& domain, const std::string& split, const std::vector<std::uint64_t>& blocks,
                   int batch, const Comm& comm);

// One piece of work of the expert grid: the experts (indices into the file list) to run on
// the given blocks of one domain's split.
struct ExpertTask {
  std::string domain, split;
  std::vector<std::uint64_t> blocks;
  std::vector<int> experts;
  const Dataset* data = nullptr;  // where the domain is; null: score_expert_tasks' `data`
};

// Runs every task on the 2-D grid over `comm` (collective): the experts that appear in some
// task are laid out with GroupLayout (groups = min(P, E)); group g loads each of its experts
// once and scores it on the tasks' blocks split across the group's ranks. The per-token
// log-probabilities are then combined across groups with one sum-allreduce of zero-filled
// arrays (exact: every entry has exactly one writer).
// Returns, per task, log p [experts.size(), blocks.size() * context] (row r belongs to
// task.experts[r]; block b's targets at columns [b * context, (b+1) * context)),
// identical on every rank.
std::vector<std::vector<float>> score_expert_tasks(ModelPool& pool, const std::vector<std::filesystem::path>& files,
                                                   const std::vector<ExpertTask>& tasks, const Dataset& data,
                                                   int batch, const Comm& comm);

}  // namespace btm
