#pragma once
// Training batches from data.h5. Deterministic for a seed, shardable, resumable.
//
// The stream of samples is global to a communicator: sample j of the stream picks a domain
// (mixing "balanced": uniform over domains; "proportional": by block count) from a
// counter-based RNG keyed by (seed, j), then takes that domain's next block in a per-epoch
// permutation keyed by (seed, domain, epoch). Every rank computes the same stream and reads
// only its share of each global batch (rank r of p: samples [r*G/p, (r+1)*G/p)), so within
// an epoch every block is read exactly once across ranks. The cursor (sample index and
// blocks consumed per domain) is identical on every rank and is saved in checkpoints.
#include <cstdint>
#include <string>
#include <vector>

#include "btm/data/dataset.hpp"

namespace btm {

struct LoaderCursor {
  std::uint64_t sample = 0;               // samples consumed by the whole communicator
  std::vector<std::uint64_t> consumed;    // blocks consumed per domain (loader's domain order)
};

class BatchLoader {
 public:
  BatchLoader(const Dataset& data, std::vector<std::string> domains, std::string split,
              int context, std::string mixing, std::uint64_t seed, int rank, int ranks);

  // Advances the stream by `global_batch` samples and fills `tokens` with this rank's
  // share, [local_count, context+1] row-major; returns local_count (may be 0).
  int next(int global_batch, std::vector<std::int32_t>& tokens);

  const LoaderCursor& cursor() const { return cursor_; }
  void restore(const LoaderCursor& cursor);  // throws when the domain count differs
  const std::vector<std::string>& domains() const { return domains_; }
  int context() const { return context_; }

 private:
  int choose_domain(std::uint64_t sample_index) const;
  std::uint64_t permuted_block(int domain, std::uint64_t consumed);

  const Dataset& data_;
  std::vector<std::string> domains_;
  std::string split_;
  int context_;
  std::string mixing_;
  std::uint64_t seed_;
  int rank_, ranks_;
  std::vector<std::uint64_t> blocks_;   // per domain
  std::vector<double> cumulative_;      // mixing distribution
  LoaderCursor cursor_;
  // Cached permutation of the current epoch, per domain.
  std::vector<std::uint64_t> perm_epoch_;
  std::vector<std::vector<std::uint64_t>> perm_;
};

// Evenly spaced, deterministic blocks of one domain's split for validation and
// evaluation: min(count, num_blocks) block indices (count = 0: all blocks).
std::vector<std::uint64_t> spaced_blocks(std::uint64_t num_blocks, std::uint64_t count);

// splitmix64: the counter-based generator behind every deterministic choice in btm.
std::uint64_t mix64(std::uint64_t x);

}  // namespace btm
