// Token scoring for evaluation: dense models over a communicator, experts on the 2-D grid.
#include "btm/eval/scoring.hpp"

#include <algorithm>
#include <set>

#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "btm/group_layout.hpp"
#include "btm/model/model_file.hpp"

namespace btm {

std::vector<std::uint64_t> eval_blocks(const Dataset& data, const std::string& domain, const std::string& split,
                                       int context, std::uint64_t max_tokens) {
  const std::uint64_t n = data.num_blocks(domain, split, context);
  if (max_tokens == 0) return spaced_blocks(n, 0);
  return spaced_blocks(n, std::max<std::uint64_t>(1, max_tokens / static_cast<std::uint64_t>(context)));
}

BlockRange block_share(std::size_t n, int rank, int ranks) {
  const auto at = [&](int r) { return static_cast<std::size_t>((static_cast<unsigned __int128>(n) * r) / ranks); };
  return {at(rank), at(rank + 1)};
}

ModelPool::ModelPool(Backend& backend, int vocab_size, int context)
    : backend_(backend), vocab_size_(vocab_size), context_(context) {
  if (context <= 0) throw Error("eval: the evaluation context must be positive (got " + std::to_string(context) + ")");
}

ModelPool::~ModelPool() = default;

Llama& ModelPool::load(const std::filesystem::path& file) {
  // A file already in its architecture's slot needs no reading.
  for (const auto& [arch, loaded] : current_) {
    if (loaded == file.string()) return *models_.at(arch);
  }
  ModelFile m = load_model(file);
  if (m.config.vocab_size != vocab_size_) {
    throw Error(file.string() + ": the model has a vocabulary of " + std::to_string(m.config.vocab_size) +
                " tokens, but the data file's tokenizer has " + std::to_string(vocab_size_) +
                "; evaluate models trained on this data.h5");
  }
  if (m.config.max_position_embeddings < context_) {
    throw Error(file.string() + ": the model was trained with a context of " +
                std::to_string(m.config.max_position_embeddings) + " tokens, shorter than the evaluation context of " +
                std::to_string(context_) + " (model.max_position_embeddings)");
  }
  const std::string arch = m.config.architecture_hash();
  auto& slot = models_[arch];
  if (!slot) slot = std::make_unique<Llama>(m.config, backend_);
  slot->set_params(m.params);
  current_[arch] = file.string();
  loads_.push_back(file.string());
  return *slot;
}

void ModelPool::record_run(const std::filesystem::path& file, const std::string& domain, const std::string& split,
                           std::size_t blocks) {
  runs_.push_back(file.string() + "|" + domain + "|" + split + "|" + std::to_string(blocks));
}

namespace {

// Scores blocks[begin, end) with `model`; out_logp(b, t) receives log p of target t of
// block begin + b. tokens: scratch [batch, context+1], nll: scratch [batch, context].
template <class Sink>
void score_blocks(Llama& model, const Dataset& data, const std::string& domain, const std::string& split,
                  const std::vector<std::uint64_t>& blocks, BlockRange range, int batch, int context, Sink&& sink) {
  std::vector<std::int32_t> tokens(std::size_t(batch) * (context + 1));
  std::vector<float> nll(std::size_t(batch) * context);
  for (std::size_t i = range.begin; i < range.end; i += batch) {
    const int nb = static_cast<int>(std::min<std::size_t>(batch, range.end - i));
    for (int b = 0; b < nb; ++b) {
      data.read_block(domain, split, blocks[i + b], context, tokens.data() + std::size_t(b) * (context + 1));
    }
    model.token_nll(tokens.data(), nb, context, nll.data());
    for (int b = 0; b < nb; ++b) sink(i + b - range.begin, nll.data() + std::size_t(b) * context);
  }
}

// Sum-allreduce of a float array of any length (MPI counts are int).
void allreduce_floats(std::vector<float>& v, const Comm& comm) {
  constexpr std::size_t chunk = std::size_t(1) << 30;
  for (std::size_t off = 0; off < v.size(); off += chunk) comm.allreduce_sum(v.data() + off, std::min(chunk, v.size() - off));
}

}  // namespace

NllSum score_dense(ModelPool& pool, const std::filesystem::path& file, const Dataset& data, const std::string& domain,
                   const std::string& split, const std::vector<std::uint64_t>& blocks, int batch, const Comm& comm) {
  if (batch <= 0) throw Error("eval.batch must be positive (got " + std::to_string(batch) + ")");
  const int ctx = pool.context();
  const BlockRange mine = block_share(blocks.size(), comm.rank(), comm.size());
  double sums[2] = {0, 0};
  if (mine.end > mine.begin) {
    Llama& model = pool.load(file);
    score_blocks(model, data, domain, split, blocks, mine, batch, ctx, [&](std::size_t, const float* nll) {
      for (int t = 0; t < ctx; ++t) sums[0] += nll[t];
      sums[1] += ctx;
    });
    pool.record_run(file, domain, split, mine.end - mine.begin);
  }
  comm.allreduce_sum(sums, 2);
  return {sums[0], static_cast<std::uint64_t>(sums[1])};
}

std::vector<std::vector<float>> score_expert_tasks(ModelPool& pool, const std::vector<std::filesystem::path>& files,
                                                   const std::vector<ExpertTask>& tasks, const Dataset& data,
                                                   int batch, const Comm& comm) {
  if (batch <= 0) throw Error("eval.batch must be positive (got " + std::to_string(batch) + ")");
  const int ctx = pool.context();
  std::vector<std::vector<float>> out(tasks.size());
  std::set<int> used_set;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    for (int e : tasks[i].experts) {
      if (e < 0 || e >= static_cast<int>(files.size())) throw Error("score_expert_tasks: expert index out of range");
      used_set.insert(e);
    }
    out[i].assign(tasks[i].experts.size() * tasks[i].blocks.size() * std::size_t(ctx), 0.0f);
  }
  if (used_set.empty()) return out;
  const std::vector<int> used(used_set.begin(), used_set.end());

  // The grid: group g of G = min(P, E) runs experts used[u] with u % G == g; inside the
  // group, rank r of S takes a contiguous share of each task's blocks.
  const GroupLayout layout = GroupLayout::make(comm.size(), static_cast<int>(used.size()));
  const int group = layout.group_of_rank(comm.rank());
  const int rank_in_group = comm.rank() - layout.first_rank(group);
  const int group_size = layout.group_size(group);
  for (int u : layout.experts_of_group(group)) {
    const int e = used[u];
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const ExpertTask& task = tasks[i];
      const auto it = std::find(task.experts.begin(), task.experts.end(), e);
      if (it == task.experts.end()) continue;
      const BlockRange mine = block_share(task.blocks.size(), rank_in_group, group_size);
      if (mine.end == mine.begin) continue;
      const std::size_t row = static_cast<std::size_t>(it - task.experts.begin());
      const std::size_t stride = task.blocks.size() * std::size_t(ctx);
      float* dst = out[i].data() + row * stride;
      Llama& model = pool.load(files[e]);
      score_blocks(model, task.data ? *task.data : data, task.domain, task.split, task.blocks, mine, batch, ctx,
                   [&](std::size_t b, const float* nll) {
                     float* d = dst + (mine.begin + b) * ctx;
                     for (int t = 0; t < ctx; ++t) d[t] = -nll[t];
                   });
      pool.record_run(files[e], task.domain, task.split, mine.end - mine.begin);
    }
  }
  for (auto& v : out) allreduce_floats(v, comm);
  return out;
}

}  // namespace btm
