#pragma once
// The corpus as the prepare phase sees it after one read: which documents are kept, in
// which domain and split, in corpus order — everything but their text. Every rank builds
// the same catalog from the same corpus, so the work can be shared without messages.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "btm/config.hpp"
#include "btm/data/corpus.hpp"

namespace btm {

struct DomainCounts {
  std::uint64_t documents = 0;       // seen in the corpus (any split)
  std::uint64_t invalid_utf8 = 0;    // skipped: text is not valid UTF-8
  std::uint64_t empty = 0;           // skipped: empty or whitespace-only text
  std::uint64_t over_cap = 0;        // dropped by data.max_mb_per_domain
};

// The kept documents of one (domain, split), in corpus order.
struct SplitDocs {
  std::string domain;
  std::string split;
  std::vector<std::string> ids;
  std::vector<std::uint64_t> bytes;  // text size per document
  std::vector<std::uint64_t> seq;    // position in the corpus stream (every document counts)
  std::uint64_t total_bytes = 0;
};

struct Catalog {
  CorpusFormat format = CorpusFormat::jsonl;
  std::uint64_t corpus_bytes = 0;           // corpus_file_bytes(): fingerprint for re-runs
  std::vector<std::string> found_domains;   // every domain in the corpus, sorted
  std::vector<std::string> train_domains;   // resolved (data.train_domains or all non-held-out)
  std::vector<std::string> heldout_domains;
  std::vector<std::string> ignored_domains; // found but neither trained on nor held out
  std::map<std::string, DomainCounts> counts;  // per train and held-out domain
  std::vector<SplitDocs> splits;  // non-empty ones; train domains then held-out, splits in kSplits order
  std::uint64_t stream_length = 0;  // documents in the corpus stream

  bool is_heldout(const std::string& domain) const;
  const SplitDocs* find(const std::string& domain, const std::string& split) const;
};

// Reads the corpus once (data.corpus, data.format) and applies the data settings: domain
// selection, UTF-8/empty checks, splits (given, else hash_split), max_mb_per_domain.
// Throws on a missing corpus, malformed input, a domain listed in both train_domains and
// heldout_domains, or a listed domain without any document (the message lists the found ones).
Catalog build_catalog(const DataConfig& data);

// The documents the tokenizer is trained on: per train domain an equal byte budget of
// tokenizer_sample_mb / (train domains), filled from the domain's train split (all splits
// when it has none) in an order keyed by (seed, document id). Entries are (index into
// catalog.splits, document index); `budget` is the byte budget per domain. The trainer takes
// whole lines of these documents until each domain's budget is spent.
struct TokenizerSample {
  std::uint64_t budget = 0;
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> per_domain;  // train_domains order
};
TokenizerSample select_tokenizer_sample(const Catalog& catalog, double sample_mb, std::uint64_t seed);

}  // namespace btm
