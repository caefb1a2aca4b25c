#include "btm/data/loader.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "btm/data/split.hpp"
#include "btm/error.hpp"

namespace btm {

std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<std::uint64_t> spaced_blocks(std::uint64_t num_blocks, std::uint64_t count) {
  std::vector<std::uint64_t> out;
  if (count == 0 || count >= num_blocks) {
    out.resize(num_blocks);
    std::iota(out.begin(), out.end(), std::uint64_t(0));
    return out;
  }
  out.reserve(count);
  // i * n / count, in 128-bit so that huge splits cannot overflow; strictly increasing
  // because count < n.
  for (std::uint64_t i = 0; i < count; ++i) {
    out.push_back(static_cast<std::uint64_t>(static_cast<unsigned __int128>(i) * num_blocks / count));
  }
  return out;
}

namespace {

double unit(std::uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// Keys of the counter-based streams; distinct constants keep the streams independent.
constexpr std::uint64_t kDomainStream = 0x6d6978696e67ull;  // "mixing"
constexpr std::uint64_t kPermStream = 0x7065726dull;        // "perm"

}  // namespace

BatchLoader::BatchLoader(const Dataset& data, std::vector<std::string> domains, std::string split,
                         int context, std::string mixing, std::uint64_t seed, int rank, int ranks)
    : data_(data),
      domains_(std::move(domains)),
      split_(std::move(split)),
      context_(context),
      mixing_(std::move(mixing)),
      seed_(seed),
      rank_(rank),
      ranks_(ranks) {
  if (domains_.empty()) throw Error("data loader: no domains to read");
  if (context_ <= 0) throw Error("data loader: context must be positive (got " + std::to_string(context_) + ")");
  if (ranks_ <= 0 || rank_ < 0 || rank_ >= ranks_) {
    throw Error("data loader: rank " + std::to_string(rank_) + " of " + std::to_string(ranks_) + " is not valid");
  }
  if (mixing_ != "balanced" && mixing_ != "proportional") {
    throw Error("data loader: mixing \"" + mixing_ + "\", expected balanced or proportional");
  }
  data_.require(domains_, split_);
  for (const auto& d : domains_) {
    std::uint64_t n = data_.num_blocks(d, split_, context_);
    if (n == 0) {
      throw Error(data_.path().string() + ": domain \"" + d + "\" split \"" + split_ + "\" has " +
                  std::to_string(data_.num_tokens(d, split_)) + " tokens, fewer than one block of context " +
                  std::to_string(context_) + " + 1");
    }
    blocks_.push_back(n);
  }
  double total = 0;
  for (std::size_t i = 0; i < domains_.size(); ++i) {
    total += mixing_ == "balanced" ? 1.0 : static_cast<double>(blocks_[i]);
    cumulative_.push_back(total);
  }
  for (auto& c : cumulative_) c /= total;
  cumulative_.back() = 1.0;
  cursor_.consumed.assign(domains_.size(), 0);
  perm_epoch_.assign(domains_.size(), std::numeric_limits<std::uint64_t>::max());
  perm_.resize(domains_.size());
}

int BatchLoader::choose_domain(std::uint64_t sample_index) const {
  if (domains_.size() == 1) return 0;
  double u = unit(mix64(mix64(seed_ ^ kDomainStream) ^ sample_index));
  auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
  return static_cast<int>(std::min<std::size_t>(it - cumulative_.begin(), domains_.size() - 1));
}

std::uint64_t BatchLoader::permuted_block(int domain, std::uint64_t consumed) {
  const std::uint64_t n = blocks_[domain];
  const std::uint64_t epoch = consumed / n;
  if (perm_epoch_[domain] != epoch) {
    // Fisher-Yates driven by a counter-based generator keyed by (seed, domain name, epoch):
    // the same permutation on every rank and after a restart, whatever the domain order.
    auto& perm = perm_[domain];
    perm.resize(n);
    std::iota(perm.begin(), perm.end(), std::uint64_t(0));
    const std::uint64_t key = mix64(mix64(seed_ ^ kPermStream) ^ fnv1a64(domains_[domain])) ^ mix64(epoch);
    for (std::uint64_t i = n - 1; i > 0; --i) {
      // Multiply-shift maps 64 random bits to [0, i] without a division.
      std::uint64_t j = static_cast<std::uint64_t>((static_cast<unsigned __int128>(mix64(key + i)) * (i + 1)) >> 64);
      std::swap(perm[i], perm[j]);
    }
    perm_epoch_[domain] = epoch;
  }
  return perm_[domain][consumed % n];
}

int BatchLoader::next(int global_batch, std::vector<std::int32_t>& tokens) {
  if (global_batch <= 0) throw Error("data loader: global batch must be positive (got " + std::to_string(global_batch) + ")");
  const std::uint64_t g = static_cast<std::uint64_t>(global_batch);
  const std::uint64_t first = static_cast<std::uint64_t>(rank_) * g / ranks_;
  const std::uint64_t last = static_cast<std::uint64_t>(rank_ + 1) * g / ranks_;
  const std::size_t row = static_cast<std::size_t>(context_) + 1;
  tokens.resize((last - first) * row);
  for (std::uint64_t s = 0; s < g; ++s) {
    int d = choose_domain(cursor_.sample + s);
    std::uint64_t block = permuted_block(d, cursor_.consumed[d]++);
    // Every rank walks the whole batch (so the cursor stays identical) but reads only its rows.
    if (s >= first && s < last) data_.read_block(domains_[d], split_, block, context_, tokens.data() + (s - first) * row);
  }
  cursor_.sample += g;
  return static_cast<int>(last - first);
}

void BatchLoader::restore(const LoaderCursor& cursor) {
  if (cursor.consumed.size() != domains_.size()) {
    throw Error("data loader: the saved cursor has " + std::to_string(cursor.consumed.size()) +
                " domains, this loader has " + std::to_string(domains_.size()) +
                " (was the checkpoint made with other domains?)");
  }
  cursor_ = cursor;
}

}  // namespace btm
