#include "btm/model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "btm/error.hpp"

namespace btm {

int sample_token(const std::vector<float>& logits, double temperature, double top_p, std::mt19937_64& rng) {
  if (logits.empty()) throw Error("sample_token: empty logits");
  if (temperature <= 0) return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0;
  for (std::size_t i = 0; i < p.size(); ++i) total += p[i] = std::exp((logits[i] - mx) / temperature);
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  // Smallest prefix of the sorted distribution with mass >= top_p.
  std::size_t keep = 0;
  double mass = 0;
  while (keep < order.size() && (keep == 0 || mass < top_p * total)) mass += p[order[keep++]];
  double r = std::uniform_real_distribution<double>(0.0, mass)(rng);
  for (std::size_t i = 0; i < keep; ++i) {
    r -= p[order[i]];
    if (r <= 0) return order[i];
  }
  return order[keep - 1];
}

std::vector<std::int32_t> generate(Llama& model, const std::vector<std::int32_t>& prompt, const SamplingOptions& options,
                                   const std::function<void(std::int32_t)>& on_token) {
  if (prompt.empty()) throw Error("generate: the prompt must hold at least one token");
  const int ctx = model.config().max_position_embeddings;
  std::mt19937_64 rng(options.seed);
  std::vector<std::int32_t> text = prompt;
  std::vector<std::int32_t> out;
  // Long prompts keep their most recent tokens.
  std::size_t start = text.size() > std::size_t(ctx - 1) ? text.size() - (ctx - 1) : 0;
  model.reset_cache();
  std::vector<float> logits = model.decode(text.data() + start, static_cast<int>(text.size() - start));
  const std::size_t limit = options.vocab_limit > 0 ? std::size_t(options.vocab_limit) : logits.size();
  for (int i = 0; i < options.max_tokens; ++i) {
    logits.resize(std::min(limit, logits.size()));  // ids the tokenizer cannot decode are never drawn
    const std::int32_t next = sample_token(logits, options.temperature, options.top_p, rng);
    text.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
    if (next == options.stop_token) break;
    if (model.cache_length() >= ctx) {
      // Context full: restart the cache from the last half of the text.
      const std::size_t keep = std::size_t(ctx / 2);
      model.reset_cache();
      logits = model.decode(text.data() + text.size() - keep, static_cast<int>(keep));
    } else {
      logits = model.decode(&text.back(), 1);
    }
  }
  return out;
}

}  // namespace btm
