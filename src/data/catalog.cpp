#include "btm/data/catalog.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <set>

#include "btm/data/loader.hpp"
#include "btm/data/split.hpp"
#include "btm/error.hpp"
#include "config/suggest.hpp"  // closest(): "did you mean"

namespace btm {

bool Catalog::is_heldout(const std::string& domain) const {
  return std::find(heldout_domains.begin(), heldout_domains.end(), domain) != heldout_domains.end();
}

const SplitDocs* Catalog::find(const std::string& domain, const std::string& split) const {
  for (const auto& s : splits) {
    if (s.domain == domain && s.split == split) return &s;
  }
  return nullptr;
}

namespace {

std::string number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

void check_list(const std::vector<std::string>& list, const char* key) {
  std::set<std::string> seen;
  for (const auto& d : list) {
    if (!seen.insert(d).second) throw Error(std::string(key) + " lists \"" + d + "\" twice");
  }
}

// Keeps the longest prefix of the split (corpus order) within `cap` bytes, at least one
// document; returns how many were dropped.
std::uint64_t apply_cap(SplitDocs& s, std::uint64_t cap) {
  std::uint64_t total = 0;
  std::size_t keep = 0;
  while (keep < s.ids.size() && (keep == 0 || total + s.bytes[keep] <= cap)) total += s.bytes[keep++];
  std::uint64_t dropped = s.ids.size() - keep;
  s.ids.resize(keep);
  s.bytes.resize(keep);
  s.seq.resize(keep);
  s.total_bytes = total;
  return dropped;
}

}  // namespace

Catalog build_catalog(const DataConfig& data) {
  Catalog c;
  check_list(data.train_domains, "data.train_domains");
  check_list(data.heldout_domains, "data.heldout_domains");
  for (const auto& d : data.heldout_domains) {
    if (std::find(data.train_domains.begin(), data.train_domains.end(), d) != data.train_domains.end()) {
      throw Error("domain \"" + d + "\" is in both data.train_domains and data.heldout_domains");
    }
  }
  if (!(data.valid_fraction >= 0 && data.test_fraction >= 0 && data.valid_fraction + data.test_fraction < 1)) {
    throw Error("data.valid_fraction + data.test_fraction must be in [0, 1) (got " +
                std::to_string(data.valid_fraction) + " + " + std::to_string(data.test_fraction) + ")");
  }
  c.format = resolve_corpus_format(data.corpus, data.format);
  c.corpus_bytes = corpus_file_bytes(data.corpus, c.format);
  const std::set<std::string> heldout(data.heldout_domains.begin(), data.heldout_domains.end());

  // Every domain's kept documents per split, before caps; domains not used are dropped later.
  // Domain folders count as domains even when they hold no document.
  std::map<std::string, std::map<std::string, SplitDocs>> by_domain;
  std::map<std::string, DomainCounts>& counts = c.counts;
  for (const auto& d : domain_folders(data.corpus, c.format)) counts[d];
  for_each_document(data.corpus, c.format, [&](RawDocument& doc) {
    std::uint64_t seq = c.stream_length++;
    DomainCounts& n = counts[doc.domain];
    ++n.documents;
    if (!is_valid_utf8(doc.text)) {
      ++n.invalid_utf8;
      return;
    }
    if (is_blank(doc.text)) {
      ++n.empty;
      return;
    }
    std::string split = doc.split;
    if (split.empty()) {
      split = hash_split(doc.id, heldout.count(doc.domain) > 0, data.valid_fraction, data.test_fraction);
      ++n.hash_split;
    }
    SplitDocs& s = by_domain[doc.domain][split];
    s.ids.push_back(doc.id);
    s.bytes.push_back(doc.text.size());
    s.seq.push_back(seq);
    s.total_bytes += doc.text.size();
  });

  for (const auto& [domain, n] : counts) c.found_domains.push_back(domain);  // std::map: sorted
  const std::string corpus = data.corpus.string();
  if (c.stream_length == 0) {
    throw Error(corpus + " has no documents" +
                (c.format == CorpusFormat::jsonl
                     ? std::string(" (expected one JSON object per line with \"text\" and \"domain\")")
                     : c.found_domains.empty()
                           ? std::string(" (expected one sub-folder per domain)")
                           : " (its domain folders " + join(c.found_domains) + " are empty)"));
  }
  // Where a domain lives, for messages: its folder, or the one corpus file.
  auto place = [&](const std::string& d) {
    return c.format == CorpusFormat::jsonl ? corpus : (data.corpus / d).string();
  };
  auto no_usable = [&](const std::string& d) {
    const DomainCounts& n = counts.at(d);
    return "domain '" + d + "' in " + place(d) + " has no usable documents (" + std::to_string(n.invalid_utf8) +
           " invalid UTF-8, " + std::to_string(n.empty) + " empty)";
  };
  auto check_listed = [&](const std::vector<std::string>& list, const char* key) {
    for (const auto& d : list) {
      if (!counts.count(d)) {
        auto near = deck::closest(d, c.found_domains);
        throw Error(std::string(key) + ": domain \"" + d + "\" has no documents in " + corpus + " (" +
                    (near ? "did you mean '" + *near + "'? " : std::string()) + "domains found: " +
                    join(c.found_domains) + ")");
      }
      if (!by_domain.count(d)) throw Error(std::string(key) + ": " + no_usable(d));
    }
  };
  check_listed(data.train_domains, "data.train_domains");
  check_listed(data.heldout_domains, "data.heldout_domains");

  if (data.train_domains.empty()) {
    for (const auto& d : c.found_domains) {
      if (heldout.count(d)) continue;
      if (!by_domain.count(d)) {
        throw Error("training " + no_usable(d) +
                    "; with data.train_domains empty every domain not held out is trained on: fix the domain, "
                    "or list the domains to train on in data.train_domains");
      }
      c.train_domains.push_back(d);
    }
  } else {
    c.train_domains = data.train_domains;
  }
  c.heldout_domains = data.heldout_domains;
  for (const auto& d : c.found_domains) {
    bool used = heldout.count(d) || std::find(c.train_domains.begin(), c.train_domains.end(), d) != c.train_domains.end();
    if (!used) c.ignored_domains.push_back(d);
  }
  if (c.train_domains.empty()) {
    throw Error("no training domain: every domain in " + corpus + " is held out (domains found: " +
                join(c.found_domains) + ")");
  }

  // Duplicate ids among each domain's kept documents (counted, not an error).
  for (const auto& [domain, splits] : by_domain) {
    std::vector<std::string_view> ids;
    for (const auto& [split, s] : splits) ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    std::sort(ids.begin(), ids.end());
    for (std::size_t i = 1; i < ids.size(); ++i) counts[domain].duplicate_ids += ids[i] == ids[i - 1];
  }

  const std::uint64_t cap = data.max_mb_per_domain > 0
                                ? static_cast<std::uint64_t>(std::llround(data.max_mb_per_domain * 1e6))
                                : 0;
  std::vector<std::string> used = c.train_domains;
  used.insert(used.end(), c.heldout_domains.begin(), c.heldout_domains.end());
  for (const auto& domain : used) {
    DomainCounts& n = counts[domain];
    auto& splits = by_domain[domain];
    for (const char* split : kSplits) {
      auto it = splits.find(split);
      if (it == splits.end() || it->second.ids.empty()) continue;
      SplitDocs s = std::move(it->second);
      s.domain = domain;
      s.split = split;
      if (cap > 0) n.over_cap += apply_cap(s, cap);
      c.splits.push_back(std::move(s));
    }
  }
  return c;
}

void require_splits(const Catalog& c, const DataConfig& data) {
  const std::string corpus = data.corpus.string();
  auto place = [&](const std::string& d) {
    return c.format == CorpusFormat::jsonl ? corpus : (data.corpus / d).string();
  };
  const std::string explicit_splits =
      c.format == CorpusFormat::split_jsonl ? "a <domain>/<split>.jsonl[.gz] file per split"
                                            : "explicit splits (a \"split\" member on JSONL lines, or the "
                                              "<domain>/<split>.jsonl[.gz] layout)";
  auto check = [&](const std::string& d, const char* split, bool is_heldout) {
    if (c.find(d, split)) return;
    const DomainCounts& n = c.counts.at(d);
    std::string given;
    for (const char* s : kSplits) {
      const SplitDocs* docs = c.find(d, s);
      if (docs) given += (given.empty() ? "" : ", ") + std::string(s) + " " + std::to_string(docs->ids.size());
    }
    std::string msg = std::string(is_heldout ? "held-out" : "training") + " domain '" + d + "' in " + place(d) +
                      " has no " + split + " documents (" + std::to_string(n.usable()) + " usable documents: " +
                      (given.empty() ? "none" : given) + "); ";
    if (n.hash_split == 0) {
      msg += "the corpus gives every document's split and none is " + std::string(split) + "; add " + split +
             " documents, or leave out the splits so that data.valid_fraction / data.test_fraction split the domain";
    } else if (is_heldout) {
      msg += "the hash split puts half of a held-out domain's " + std::to_string(n.hash_split) +
             " documents without a split in valid and half in test, and this one got none; add documents "
             "(2 at the very least, a few dozen for a useful estimate), or give " + explicit_splits;
    } else {
      const std::string split_s(split);
      const double fraction = split_s == "valid"  ? data.valid_fraction
                              : split_s == "test" ? data.test_fraction
                                                  : 1 - data.valid_fraction - data.test_fraction;
      const std::string key = split_s == "valid"  ? "data.valid_fraction = " + number(data.valid_fraction)
                              : split_s == "test" ? "data.test_fraction = " + number(data.test_fraction)
                                                  : "1 - data.valid_fraction - data.test_fraction = " +
                                                        number(fraction);
      char expect[64];
      std::snprintf(expect, sizeof expect, "%.2g", fraction * n.hash_split);
      msg += "the hash split of its " + std::to_string(n.hash_split) + " documents without a split, with " + key +
             " (about " + expect + " expected), put none there; " +
             (split_s == "train" ? "lower data.valid_fraction / data.test_fraction"
                                 : "raise data.valid_fraction / data.test_fraction") +
             ", add documents, or give " + explicit_splits;
    }
    throw Error(msg);
  };
  for (const auto& d : c.train_domains) {
    for (const char* split : kSplits) check(d, split, false);
  }
  for (const auto& d : c.heldout_domains) {
    for (const char* split : {"valid", "test"}) check(d, split, true);
  }
}

TokenizerSample select_tokenizer_sample(const Catalog& catalog, double sample_mb, std::uint64_t seed) {
  TokenizerSample out;
  const std::size_t domains = catalog.train_domains.size();
  out.budget = domains ? static_cast<std::uint64_t>(std::max(0.0, sample_mb) * 1e6 / domains) : 0;
  out.per_domain.resize(domains);
  for (std::size_t d = 0; d < domains; ++d) {
    for (std::size_t si = 0; si < catalog.splits.size(); ++si) {
      const SplitDocs& s = catalog.splits[si];
      if (s.domain != catalog.train_domains[d] || s.split != "train") continue;
      // A seeded order over the ids: the sample changes with run.seed, not with the rank count.
      std::vector<std::pair<std::uint64_t, std::size_t>> order(s.ids.size());
      for (std::size_t i = 0; i < s.ids.size(); ++i) order[i] = {mix64(seed ^ fnv1a64(s.ids[i])), i};
      std::sort(order.begin(), order.end());
      std::uint64_t taken = 0;
      for (const auto& [key, i] : order) {
        if (taken >= out.budget) break;
        out.per_domain[d].emplace_back(si, i);
        taken += s.bytes[i];
      }
    }
  }
  return out;
}

}  // namespace btm
