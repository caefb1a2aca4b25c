#include "btm/train/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "btm/collective_error.hpp"
#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/model/llama.hpp"
#include "btm/plan.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/optimizer.hpp"
#include "btm/train/schedule.hpp"
#include "btm/train/stop_signal.hpp"
#include "btm/train/throughput.hpp"

namespace btm {

namespace {

std::uint64_t hash_name(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// A file that is skipped as finished or resumed must be the model the deck describes, on
// data.h5's tokenizer: otherwise later phases would quietly use another model.
void require_same_model(const std::filesystem::path& file, const ModelConfig& config, const Dataset& data) {
  const h5::File f(file, h5::File::Mode::read);
  const ModelConfig in_file = read_model_config(f);
  std::string diff = in_file.architecture_differences(config);
  if (in_file.max_position_embeddings != config.max_position_embeddings) {
    diff += (diff.empty() ? "" : ", ") + std::string("context ") + std::to_string(in_file.max_position_embeddings) +
            " vs " + std::to_string(config.max_position_embeddings);
  }
  if (!diff.empty()) {
    throw Error(file.string() + " holds another model than the deck's [model] (file vs deck: " + diff +
                "); delete it to train it again, or restore the deck's model settings");
  }
  if (read_tokenizer(f).model != data.tokenizer_model()) {
    throw Error(file.string() + " was trained with another tokenizer than " + data.path().string() +
                "; delete it to train it again, or use the data.h5 it was trained on");
  }
}

// Is a tensor one of the MoE experts' FFN weights (block_sparse_moe.experts.<e>.w1/w2/w3)?
bool is_expert_ffn(const ParamInfo& p) { return p.name.find(".block_sparse_moe.experts.") != std::string::npos; }

// Per-layer expert load since the last call, summed over the ranks (collective), as
// " load/<l>=<fraction of token-slots per expert> gate/<l>=<mean gate per expert>".
std::string routing_summary(Llama& model, const Comm& comm) {
  const RoutingStats& st = model.routing_stats();
  std::vector<double> sums = st.tokens;
  sums.insert(sums.end(), st.gate_sum.begin(), st.gate_sum.end());
  for (auto dropped : st.dropped) sums.push_back(double(dropped));
  comm.allreduce_sum(sums.data(), sums.size());
  const std::size_t L = st.layers, E = st.experts;
  std::string out;
  for (std::size_t l = 0; l < L; ++l) {
    double total = 0;
    for (std::size_t e = 0; e < E; ++e) total += sums[l * E + e];
    std::string load, gate;
    for (std::size_t e = 0; e < E; ++e) {
      const double tokens = sums[l * E + e], gates = sums[L * E + l * E + e];
      if (e > 0) {
        load += ',';
        gate += ',';
      }
      load += fmt("%.3f", total > 0 ? tokens / total : 0.0);
      gate += fmt("%.3f", tokens > 0 ? gates / tokens : 0.0);
    }
    out += " load/" + std::to_string(l) + "=" + load + " gate/" + std::to_string(l) + "=" + gate;
    if (const double dropped = sums[2 * L * E + l]; dropped > 0) {
      out += " dropped/" + std::to_string(l) + "=" + fmt("%.0f", dropped);
    }
  }
  model.reset_routing_stats();
  return out;
}

}  // namespace

ModelConfig resolve_model_config(const Deck& deck, const Dataset& data) {
  ModelConfig c = deck.model;
  if (c.vocab_size == 0) c.vocab_size = data.vocab_size();
  if (c.vocab_size < data.vocab_size()) {
    throw Error("model.vocab_size = " + std::to_string(c.vocab_size) + " is smaller than the tokenizer's vocabulary (" +
                std::to_string(data.vocab_size()) + ") in " + data.path().string() +
                "; set model.vocab_size = 0 to use the tokenizer's");
  }
  c.intermediate_size = c.resolved_intermediate_size();
  c.num_key_value_heads = c.kv_heads();
  return c;
}

double mean_nll(Llama& model, const Dataset& data, const std::string& domain, const std::string& split,
                std::uint64_t max_blocks, int batch, const Comm& comm) {
  const int ctx = model.config().max_position_embeddings;
  const auto blocks = spaced_blocks(data.num_blocks(domain, split, ctx), max_blocks);
  std::vector<std::uint64_t> mine;
  for (std::size_t i = comm.rank(); i < blocks.size(); i += comm.size()) mine.push_back(blocks[i]);
  std::vector<std::int32_t> tokens(std::size_t(batch) * (ctx + 1));
  std::vector<float> nll(std::size_t(batch) * ctx);
  double sums[2] = {0, 0};
  for (std::size_t i = 0; i < mine.size(); i += batch) {
    const int nb = static_cast<int>(std::min<std::size_t>(batch, mine.size() - i));
    for (int b = 0; b < nb; ++b) data.read_block(domain, split, mine[i + b], ctx, tokens.data() + std::size_t(b) * (ctx + 1));
    model.token_nll(tokens.data(), nb, ctx, nll.data());
    for (std::size_t j = 0; j < std::size_t(nb) * ctx; ++j) sums[0] += nll[j];
    sums[1] += double(nb) * ctx;
  }
  comm.allreduce_sum(sums, 2);
  return sums[1] > 0 ? sums[0] / sums[1] : std::nan("");
}

TrainOutcome train_model(const Deck& deck, const Dataset& data, Backend& backend, const Comm& comm,
                         const TrainJob& job, const std::function<StartPoint()>& start,
                         const TrainControl& control) {
  const TrainConfig& tc = job.train;
  const ModelConfig config = job.model ? *job.model : resolve_model_config(deck, data);
  const int ctx = config.max_position_embeddings;
  const std::int64_t total_steps = static_cast<std::int64_t>(phase_steps(job.tokens, tc, ctx));
  const std::string tag = "phase=" + job.phase + " model=" + job.name;
  auto log = [&](const std::string& line) {
    if (comm.is_root()) log_line(tag + " " + line);
  };
  data.require(job.domains, "train");
  data.require(job.valid_domains, "valid");

  if (tc.precision != "auto") backend.set_matmul_dtype(tc.precision == "bf16" ? DType::bf16 : DType::f32);
  Llama model(config, backend);
  AdamW optimizer(model.layout(), backend, tc);
  if (!job.train_experts) {
    model.set_train_experts(false);
    optimizer.freeze(is_expert_ffn);
  }
  TrainState state;
  ModelMeta meta{job.name, job.phase, "", job.domain, to_toml(deck)};
  TokenizerBlob tokenizer{data.tokenizer_model(), data.vocab_size(), data.bos_id(), data.eos_id()};

  // Reading the file to resume or the model to branch from: a failure there (a corrupt or
  // unreadable file) is agreed by the communicator's ranks, so a caller may go on without it.
  bool already_complete = false;
  agree_on_failure(comm, [&] {
    if (std::filesystem::exists(job.file)) {
      require_same_model(job.file, config, data);
      if (model_is_complete(job.file)) {
        const TrainState done = read_train_state(job.file);
        log("status=skipped reason=complete steps=" + std::to_string(done.step) + " file=" + job.file.string());
        if (done.total_steps != total_steps) {
          log("warning: the deck now plans " + std::to_string(total_steps) + " steps; delete " + job.file.string() +
              " to train again");
        }
        already_complete = true;
        return;
      }
      Checkpoint ck = load_checkpoint(job.file);
      if (ck.state.cursor_domains != job.domains) {
        throw Error(job.file.string() + " was trained on other domains than the deck now lists; delete it to start over");
      }
      if (ck.state.step >= total_steps) {
        throw Error(job.file.string() + " is an interrupted checkpoint at step " + std::to_string(ck.state.step) +
                    ", but the deck now plans only " + std::to_string(total_steps) + " steps for " + job.name +
                    "; give the phase more tokens, or delete the file to train it again");
      }
      if (ck.state.total_steps != total_steps) {
        log("warning: " + job.file.string() + " was planned for " + std::to_string(ck.state.total_steps) +
            " steps, the deck now plans " + std::to_string(total_steps) + ": the schedule follows the new plan");
      }
      model.set_params(ck.model.params);
      if (!ck.m.empty()) optimizer.set_moments(ck.m, ck.v);
      state = ck.state;
      meta.parent = ck.model.meta.parent;
      log("status=resumed step=" + std::to_string(state.step) + " file=" + job.file.string());
    } else {
      StartPoint sp = start();
      if (sp.params.empty()) {
        model.init_weights(mix64(deck.run.seed ^ hash_name(job.name)));
      } else {
        model.set_params(sp.params);
      }
      if (!sp.m.empty()) {
        optimizer.set_moments(sp.m, sp.v);
        state.adam_step_offset = sp.adam_steps;
      }
      meta.parent = sp.parent;
      state.data_seed = mix64(deck.run.seed ^ hash_name("data:" + job.name));
      state.cursor_domains = job.domains;
    }
  });
  if (already_complete) return TrainOutcome::already_complete;
  state.total_steps = total_steps;

  BatchLoader loader(data, job.domains, "train", ctx, job.mixing, state.data_seed, comm.rank(), comm.size());
  if (state.step > 0) loader.restore(state.cursor);
  auto reducer = backend.make_allreducer(comm);
  const auto buckets = model.gradient_buckets();
  const LrSchedule schedule{tc.lr, tc.min_lr_ratio, std::lround(tc.warmup_fraction * total_steps), total_steps};
  const double flops_per_token = training_flops_per_token(config, ctx);
  const double peak = measured_peak_flops(backend);
  const std::uint64_t tokens_per_step = std::uint64_t(tc.global_batch) * ctx;
  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step);
  // sample_top1 noise: keyed by the global index of a micro-batch's first sequence, so it is
  // the same at any rank count and after a resume.
  const std::uint64_t routing_key = mix64(deck.run.seed ^ hash_name("routing:" + job.name));
  const std::uint64_t rank_first = std::uint64_t(comm.rank()) * std::uint64_t(tc.global_batch) / comm.size();
  StopSignals signals;

  std::int64_t last_saved = std::filesystem::exists(job.file) ? state.step : -1;
  auto last_good = [&] {
    return last_saved < 0 ? "nothing was written to " + job.file.string() + " yet"
                          : "the last good checkpoint (step " + std::to_string(last_saved) + ") in " +
                                job.file.string() + " is intact";
  };
  auto save = [&](bool complete) {
    // Identical on every rank: a diverged model is never written over a good checkpoint.
    if (!std::isfinite(backend.sum_squares(model.params(), model.layout().total()))) {
      throw CollectiveError(tag + ": the parameters are not finite after step " + std::to_string(state.step) + "; " +
                            last_good() + ". Lower train.lr, then re-run to resume");
    }
    state.complete = complete;
    state.cursor = loader.cursor();
    // Only the root writes; every rank learns whether it could (a full disk, a lost folder).
    agree_on_failure(comm, [&] {
      if (!comm.is_root()) return;
      Checkpoint ck;
      ck.model = ModelFile{config, meta, tokenizer, model.get_params()};
      ck.m = optimizer.get_m();
      ck.v = optimizer.get_v();
      ck.state = state;
      save_checkpoint(job.file, ck);
    });
    last_saved = state.step;
  };
  auto validate = [&] {
    state.metrics.valid_step.push_back(state.step);
    std::string line = "step=" + std::to_string(state.step);
    for (const auto& domain : job.valid_domains) {
      const double v = mean_nll(model, data, domain, "valid", std::uint64_t(tc.eval_batches) * tc.micro_batch,
                                tc.micro_batch, comm);
      state.metrics.valid[domain].push_back(v);
      line += " valid/" + domain + "=" + fmt("%.4f", v);
    }
    log(line);
  };

  log("status=start steps=" + std::to_string(total_steps) + " tokens_per_step=" + std::to_string(tokens_per_step) +
      " ranks=" + std::to_string(comm.size()) + " params=" + std::to_string(parameter_count(config)) + " " +
      backend.matmul_info() +
      (config.is_moe() ? " experts=" + std::to_string(config.num_local_experts) + " routing=" + config.moe_routing +
                             " experts_per_token=" + std::to_string(config.experts_per_token()) +
                             " train_experts=" + (job.train_experts ? "true" : "false")
                       : ""));
  // Steps skipped by the non-finite guard up to now: the trailing non-finite entries of the
  // metrics, so a resumed run counts on where the interrupted one stopped.
  int skipped_in_a_row = 0;
  for (std::size_t i = state.metrics.loss.size(); i-- > 0;) {
    if (std::isfinite(state.metrics.loss[i]) && std::isfinite(state.metrics.grad_norm[i])) break;
    ++skipped_in_a_row;
  }
  std::vector<std::int32_t> tokens;
  double avg_step_s = 0;
  using clock = std::chrono::steady_clock;
  while (state.step < total_steps) {
    const auto t0 = clock::now();
    model.zero_grads();
    const std::uint64_t first_sample = loader.cursor().sample + rank_first;
    const int local = loader.next(tc.global_batch, tokens);
    double sums[3] = {0, StopSignals::requested() ? 1.0 : 0.0, 0};
    // The gradient sum over ranks runs bucket by bucket while the last micro-batch's backward
    // pass finishes the buckets after it (the same sums as one allreduce of the whole buffer).
    std::size_t started = 0;
    auto start_buckets = [&](std::size_t upto) {
      if (comm.size() < 2) return;
      reducer->progress();
      for (; started < upto; ++started) reducer->start_sum(model.grads() + buckets[started].first, buckets[started].second);
    };
    for (int i = 0; i < local; i += tc.micro_batch) {
      const int nb = std::min(tc.micro_batch, local - i);
      const bool last = i + tc.micro_batch >= local;
      model.set_routing_seed(mix64(routing_key ^ (first_sample + std::uint64_t(i))));
      model.accumulate_gradients(tokens.data() + std::size_t(i) * (ctx + 1), nb, ctx, grad_scale,
                                 last ? std::function<void(int)>([&](int b) { start_buckets(std::size_t(b) + 1); })
                                      : std::function<void(int)>());
    }
    start_buckets(buckets.size());  // a rank without micro-batches still takes part in every sum
    sums[0] = model.take_nll_sum();
    sums[2] = model.take_aux_loss_sum();
    const std::int64_t step = state.step + 1;
    if (comm.size() > 1) reducer->wait();
    // Test hook: rank 0's loss and summed gradients turn NaN, as if its data had been bad.
    if (control.nonfinite_at && comm.is_root() && control.nonfinite_at(job.name, step)) {
      sums[0] = std::nan("");
      backend.scale(model.grads(), std::nanf(""), model.layout().total());
    }
    comm.allreduce_sum(sums, 3);
    const double loss = sums[0] / double(tokens_per_step);
    const double aux_loss = sums[2] / double(tokens_per_step);
    const double grad_norm = optimizer.clip(model.grads());
    const double lr = schedule.at(step);
    // The guard decides on reduced values, and once more together: every rank skips alike.
    const bool nonfinite = comm.any(!std::isfinite(loss) || !std::isfinite(grad_norm));
    skipped_in_a_row = nonfinite ? skipped_in_a_row + 1 : 0;
    if (nonfinite) {
      const std::string what = !std::isfinite(loss) ? "loss" : "gradient norm";
      if (skipped_in_a_row > tc.max_skipped_steps) {
        throw CollectiveError(tag + ": the " + what + " is not finite at step " + std::to_string(step) + " (" +
                              std::to_string(skipped_in_a_row) + " step(s) in a row, train.max_skipped_steps = " +
                              std::to_string(tc.max_skipped_steps) + "); " + last_good() +
                              ". Lower train.lr or check the data, then re-run to resume");
      }
      log("step=" + std::to_string(step) + " status=skipped reason=nonfinite loss=" + fmt("%.4f", loss) +
          " grad_norm=" + fmt("%.3f", grad_norm) + " skipped_in_a_row=" + std::to_string(skipped_in_a_row) +
          " max_skipped_steps=" + std::to_string(tc.max_skipped_steps));
    } else {
      optimizer.step(model.params(), model.grads(), lr, state.adam_step_offset + step);
      model.refresh_compute_params();
    }
    backend.synchronize();
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    avg_step_s = avg_step_s == 0 ? dt : 0.9 * avg_step_s + 0.1 * dt;

    state.step = step;
    state.tokens += tokens_per_step;
    const double tok_s = tokens_per_step / dt;
    TrainMetrics& m = state.metrics;
    m.step.push_back(step);
    m.loss.push_back(loss);
    m.lr.push_back(lr);
    m.grad_norm.push_back(grad_norm);
    m.tokens_per_s.push_back(tok_s);
    if (config.is_moe()) m.aux_loss.push_back(aux_loss);

    const bool last = step == total_steps;
    if ((tc.log_every > 0 && step % tc.log_every == 0) || last || step == 1) {
      log("step=" + std::to_string(step) + "/" + std::to_string(total_steps) + " loss=" + fmt("%.4f", loss) +
          " lr=" + fmt("%.3e", lr) + " grad_norm=" + fmt("%.3f", grad_norm) + " tok/s=" + fmt("%.0f", tok_s) +
          " mfu=" + fmt("%.3f", tok_s * flops_per_token / (peak * comm.size())) +
          " tokens=" + std::to_string(state.tokens) +
          " eta=" + format_seconds(avg_step_s * double(total_steps - step)) +
          (config.is_moe() ? " aux_loss=" + fmt("%.5f", aux_loss) + routing_summary(model, comm) : ""));
    }
    if (last || (tc.eval_every > 0 && step % tc.eval_every == 0)) {
      validate();
      model.reset_routing_stats();  // the load logged is the training batches'
    }
    const bool stop = sums[1] > 0 || step == control.stop_after_step;
    if (last || stop || (tc.checkpoint_every > 0 && step % tc.checkpoint_every == 0)) save(last);
    if (stop && !last) {
      log("status=interrupted step=" + std::to_string(step) + " file=" + job.file.string() + " (re-run to resume)");
      return TrainOutcome::interrupted;
    }
  }
  log("status=done steps=" + std::to_string(total_steps) + " tokens=" + std::to_string(state.tokens) +
      " file=" + job.file.string());
  return TrainOutcome::completed;
}

}  // namespace btm
