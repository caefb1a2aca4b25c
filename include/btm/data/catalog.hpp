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
  std::uint64_t hash_split = 0;      // kept documents whose split came from hash_split (no split given)
  std::uint64_t duplicate_ids = 0;   // kept documents whose id an earlier kept one of the domain has
  std::uint64_t usable() const { return documents - invalid_utf8 - empty; }
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
  std::map<std::string, DomainCounts> counts;  // per domain found (ignored ones too)
  std::vector<SplitDocs> splits;  // non-empty ones; train domains then held-out, splits in kSplits order
  std::uint64_t stream_length = 0;  // documents in the corpus stream

  bool is_heldout(const std::string& domain) const;
  const SplitDocs* find(const std::string& domain, const std::string& split) const;
};

// Reads the corpus once (data.corpus, data.format) and applies the data settings: domain
// selection, UTF-8/empty checks, splits (given, else hash_split), max_mb_per_domain.
// Throws on a missing or empty corpus, malformed input, a domain listed in both
// train_domains and heldout_domains, a listed domain the corpus lacks (with a "did you
// mean" and the domains found), and a training or held-out domain without usable
// documents ("domain 'x' in FILE has no usable documents (N invalid UTF-8, M empty)"; an
// empty domain folder too). When data.train_domains is empty every domain found that is
// not held out is a training domain.
Catalog build_catalog(const DataConfig& data);

// The splits the later phases read: every training domain needs train, valid and test
// (training, validation, eval.split), every held-out domain valid and test (eval, cached
// prior). Throws naming the domain, the split, its document count and the fraction, and
// what to do (raise data.valid_fraction / data.test_fraction, add documents, or give
// explicit splits). prepare calls it before it tokenizes anything.
void require_splits(const Catalog& catalog, const DataConfig& data);

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
