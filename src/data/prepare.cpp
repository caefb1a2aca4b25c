// The prepare phase: corpus -> SentencePiece tokenizer -> data.h5 (ARCHITECTURE, Files).
//
// Work sharing. Every rank reads the corpus once to build the same Catalog (metadata only),
// so ranks agree on every document's place without messages. Each (domain, split) is cut
// into P contiguous, byte-balanced ranges; rank r reads its range's text in a second pass,
// tokenizes it, and writes it with one collective MPI-IO hyperslab write per split. Token
// counts per document are summed across ranks for doc_offsets. Rank 0 alone trains the
// tokenizer (on a sample it keeps during the second pass) and broadcasts the model, then
// writes the small datasets and attributes serially into the same temporary file, which
// is renamed into place: data.h5 either is complete or does not exist. The content is the
// same for any rank count.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <thread>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/catalog.hpp"
#include "btm/data/split.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/log.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "data/collective_write.hpp"

namespace btm {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string join(const std::vector<std::string>& items, const char* sep = ",") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// Waits for a request without spinning: while rank 0 trains the tokenizer the other ranks
// must leave it the cores.
void wait_idle(MPI_Request& request) {
  int done = 0;
  for (;;) {
    BTM_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void patient_broadcast(const Comm& comm, std::string& value) {
  std::uint64_t n = value.size();
  MPI_Request request;
  BTM_MPI(MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, comm.handle(), &request));
  wait_idle(request);
  value.resize(n);
  comm.broadcast(value.data(), n);
}

// Runs `fn` on rank 0; every rank returns its result or throws the same error.
std::string on_root(const Comm& comm, const std::function<std::string()>& fn) {
  std::string message;
  if (comm.is_root()) {
    try {
      message = "1" + fn();
    } catch (const std::exception& e) {
      message = std::string("0") + e.what();
    }
  }
  patient_broadcast(comm, message);
  if (message.empty() || message[0] != '1') throw Error(message.empty() ? "prepare: lost rank 0's result" : message.substr(1));
  return message.substr(1);
}

// Runs `fn` on every rank; when any rank fails, every rank throws the first rank's error.
void on_all(const Comm& comm, const std::function<void()>& fn) {
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
  }
  for (const auto& e : comm.allgather(error)) {
    if (!e.empty()) throw Error(e);
  }
}

// The tokenizer to use instead of training one: data.tokenizer, else the model file of
// seed.init (a pretrained model's tokenizer is the one its seed needs); empty: train one.
fs::path given_tokenizer(const Deck& deck) {
  return deck.data.tokenizer.empty() ? deck.seed.init : deck.data.tokenizer;
}

// A SentencePiece .model file, or the /tokenizer/model of a btm model file (.h5).
std::string tokenizer_bytes(const fs::path& path) {
  if (path.extension() == ".h5") {
    try {
      return read_tokenizer(h5::open_for_read(path, "a btm model file")).model;
    } catch (const Error& e) {
      throw Error(std::string("the tokenizer of seed.init (data.tokenizer is unset): ") + e.what());
    }
  }
  return Tokenizer::from_file(path).model_bytes();
}

// ---- the settings data.h5 was built from: equal settings -> the phase is skipped --------

using Settings = std::vector<std::pair<std::string, std::string>>;

std::string canonical_text(const fs::path& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(fs::absolute(p), ec);
  return (ec ? p : c).string();
}

Settings data_settings(const Deck& deck, CorpusFormat format, std::uint64_t corpus_bytes) {
  const DataConfig& d = deck.data;
  Settings s = {
      {"data.corpus", canonical_text(d.corpus)},
      {"data.format", corpus_format_name(format)},
      {"corpus size (bytes)", std::to_string(corpus_bytes)},
      {"data.train_domains", d.train_domains.empty() ? "(all)" : join(d.train_domains)},
      {"data.heldout_domains", join(d.heldout_domains)},
      {"data.valid_fraction", number(d.valid_fraction)},
      {"data.test_fraction", number(d.test_fraction)},
      {"data.max_mb_per_domain", number(d.max_mb_per_domain)},
  };
  const fs::path given = given_tokenizer(deck);
  if (given.empty()) {
    s.insert(s.end(), {{"data.tokenizer", "(trained)"},
                       {"data.vocab_size", std::to_string(d.vocab_size)},
                       {"data.tokenizer_sample_mb", number(d.tokenizer_sample_mb)},
                       {"run.seed", std::to_string(deck.run.seed)}});
  } else {
    std::error_code ec;
    auto size = fs::file_size(given, ec);
    s.push_back({"data.tokenizer", canonical_text(given) + " (" + (ec ? "missing" : std::to_string(size) + " bytes") + ")"});
  }
  return s;
}

std::string settings_text(const Settings& s) {
  std::string out;
  for (const auto& [k, v] : s) out += k + " = " + v + "\n";
  return out;
}

std::map<std::string, std::string> parse_settings(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    auto eq = line.find(" = ");
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 3);
    pos = end + 1;
  }
  return out;
}

// "" when data.h5 must be built, "skip" when it is up to date; throws when it exists but
// was built from other settings.
std::string check_existing(const fs::path& path, const Settings& wanted) {
  if (!fs::exists(path)) return "";
  const std::string fix = "delete " + path.string() + " to rebuild it, or set run.out_dir to another folder";
  std::string stored;
  try {
    h5::File f(path, h5::File::Mode::read);
    if (!f.has_attr("/meta", "phase") || f.string_attr("/meta", "phase") != "prepare" ||
        !f.has_attr("/meta", "data_settings") || !f.exists("/tokenizer/model") || !f.exists("/domains")) {
      throw Error("no /meta phase = \"prepare\" with its data_settings");
    }
    stored = f.string_attr("/meta", "data_settings");
  } catch (const std::exception& e) {
    throw Error(path.string() + " exists but is not a data file written by btm's prepare phase (" + e.what() +
                "); " + fix);
  }
  auto have = parse_settings(stored);
  std::string diff;
  for (const auto& [key, value] : wanted) {
    auto it = have.find(key);
    std::string old = it == have.end() ? "(not recorded)" : it->second;
    if (old != value) diff += "\n  " + key + ": the file has " + old + ", the deck has " + value;
  }
  for (const auto& [key, value] : have) {
    const std::string& name = key;  // a lambda may not capture a structured binding (Clang 14)
    bool known = std::any_of(wanted.begin(), wanted.end(), [&](const auto& kv) { return kv.first == name; });
    if (!known) diff += "\n  " + key + ": the file has " + value + ", the deck has (not used)";
  }
  if (!diff.empty()) {
    throw Error(path.string() + " was built from different data settings:" + diff + "\n" + fix);
  }
  return "skip";
}

// The corpus a finished data.h5 was built from, or "" when there is no such file.
std::string recorded_corpus(const fs::path& path) {
  if (!fs::exists(path)) return "";
  try {
    h5::File f(path, h5::File::Mode::read);
    if (!f.has_attr("/meta", "phase") || f.string_attr("/meta", "phase") != "prepare") return "";
    auto settings = parse_settings(f.has_attr("/meta", "data_settings") ? f.string_attr("/meta", "data_settings") : "");
    return settings.count("data.corpus") ? settings["data.corpus"] : std::string("an unknown corpus");
  } catch (const std::exception&) {
    return "";
  }
}

// ---- work sharing ---------------------------------------------------------------------

// Documents [begin, end) of one split for this rank: contiguous, cut where the running
// byte count crosses r * total / P, so ranks get about equal text.
std::pair<std::size_t, std::size_t> my_range(const SplitDocs& s, int rank, int ranks) {
  std::size_t begin = s.ids.size(), end = s.ids.size();
  bool found_begin = false;
  long double before = 0;
  for (std::size_t i = 0; i < s.ids.size(); ++i) {
    long double mid = before + s.bytes[i] / 2.0L;
    int owner = static_cast<int>(std::min<long double>(ranks - 1, mid * ranks / static_cast<long double>(s.total_bytes)));
    if (owner == rank && !found_begin) {
      begin = i;
      found_begin = true;
    }
    if (owner > rank) {
      end = i;
      break;
    }
    before += s.bytes[i];
  }
  if (!found_begin) return {s.ids.size(), s.ids.size()};
  return {begin, end};
}

struct SplitWork {
  std::size_t begin = 0, end = 0;           // this rank's documents
  std::vector<std::string> texts;           // [end - begin], freed once tokenized
  std::vector<std::uint32_t> tokens;        // this rank's tokens, EOS after each document
  std::vector<std::uint64_t> offsets;       // [docs + 1], all documents (after the count exchange)
};

// The lines the tokenizer trains on: whole lines of the sample documents, each domain
// until its byte budget is spent.
std::vector<std::string_view> sample_lines(const TokenizerSample& sample,
                                           const std::map<std::pair<std::size_t, std::size_t>, std::string>& texts) {
  std::vector<std::string_view> lines;
  for (const auto& domain : sample.per_domain) {
    std::uint64_t used = 0;
    for (const auto& key : domain) {
      std::string_view text = texts.at(key);
      std::size_t pos = 0;
      while (pos < text.size() && used < sample.budget) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        if (end > pos) {
          lines.push_back(text.substr(pos, end - pos));
          used += end - pos + 1;
        }
        pos = end + 1;
      }
      if (used >= sample.budget) break;
    }
  }
  return lines;
}

void log_summary(const Catalog& catalog, const std::vector<SplitWork>& work, double seconds) {
  char line[256];
  std::string table = "prepare: summary\n";
  std::snprintf(line, sizeof line, "  %-20s %-8s %-6s %10s %12s %9s\n", "domain", "role", "split", "docs", "tokens", "MB");
  table += line;
  std::uint64_t docs = 0, tokens = 0, bytes = 0;
  for (std::size_t i = 0; i < catalog.splits.size(); ++i) {
    const SplitDocs& s = catalog.splits[i];
    std::uint64_t n = work[i].offsets.back();
    std::snprintf(line, sizeof line, "  %-20s %-8s %-6s %10zu %12llu %9.3f\n", s.domain.c_str(),
                  catalog.is_heldout(s.domain) ? "heldout" : "train", s.split.c_str(), s.ids.size(),
                  static_cast<unsigned long long>(n), s.total_bytes / 1e6);
    table += line;
    docs += s.ids.size();
    tokens += n;
    bytes += s.total_bytes;
  }
  table.pop_back();
  log_root(table);
  std::snprintf(line, sizeof line, "prepare: docs=%llu tokens=%llu MB=%.3f bytes/token=%.3f seconds=%.1f",
                static_cast<unsigned long long>(docs), static_cast<unsigned long long>(tokens), bytes / 1e6,
                tokens ? static_cast<double>(bytes) / tokens : 0.0, seconds);
  log_root(line);
}

}  // namespace

void run_prepare(const Deck& deck, const Comm& world) {
  const auto t0 = Clock::now();
  const fs::path path = deck.data_file();
  const DataConfig& data = deck.data;

  // Settings and the skip decision come first: a finished phase must not re-read the corpus.
  // Whether the corpus exists decides which collectives follow, so the ranks decide it
  // together: a rank that cannot see it (no shared file system there) stops every rank.
  CorpusFormat format{};
  std::uint64_t corpus_bytes = 0;
  std::error_code exists_ec;
  const bool here = data.corpus.empty() || fs::exists(data.corpus, exists_ec);
  const auto seen = world.allgather(here ? "1" : "0");
  std::vector<std::string> blind;
  for (std::size_t r = 0; r < seen.size(); ++r) {
    if (seen[r] != "1") blind.push_back(std::to_string(r));
  }
  if (!blind.empty() && blind.size() < seen.size()) {
    throw Error("data.corpus: " + data.corpus.string() + " is not visible on rank" + (blind.size() > 1 ? "s " : " ") +
                join(blind, ", ") + " of " + std::to_string(world.size()) +
                " (the other ranks see it); every rank reads the corpus: put it on a file system that all nodes "
                "mount, or give an absolute path that is the same everywhere");
  }
  if (!blind.empty()) {
    // A finished data.h5 stays usable when the corpus is not reachable any more (a later job
    // on another machine): the settings cannot be compared, so say so and keep the file.
    const std::string recorded = on_root(world, [&] { return recorded_corpus(path); });
    if (!recorded.empty()) {
      warn_root("prepare: corpus " + data.corpus.string() + " not found; keeping " + path.string() +
                " (built from " + recorded + ") without checking it against the deck");
      return;
    }
  }
  on_all(world, [&] {
    format = resolve_corpus_format(data.corpus, data.format);
    corpus_bytes = corpus_file_bytes(data.corpus, format);
  });
  const Settings settings = data_settings(deck, format, corpus_bytes);
  if (on_root(world, [&] { return check_existing(path, settings); }) == "skip") {
    log_root("prepare: skipped, " + path.string() + " is up to date (same corpus, domains and tokenizer settings)");
    return;
  }
  log_root("prepare: corpus=" + canonical_text(data.corpus) + " format=" + corpus_format_name(format) +
           " ranks=" + std::to_string(world.size()));

  // A given tokenizer is checked before the corpus is read: a bad path fails in seconds.
  const fs::path given = given_tokenizer(deck);
  const bool train_tokenizer = given.empty();
  std::string model;
  if (!train_tokenizer) model = on_root(world, [&] { return tokenizer_bytes(given); });

  // Pass 1 (every rank): which documents go where; every split the later phases read exists.
  Catalog catalog;
  on_all(world, [&] {
    catalog = build_catalog(data);
    require_splits(catalog, data);
  });
  std::uint64_t duplicates = 0;
  for (const auto& [domain, n] : catalog.counts) duplicates += n.duplicate_ids;
  log_root("prepare: train=" + join(catalog.train_domains) + " heldout=" + join(catalog.heldout_domains) +
           " documents=" + std::to_string(catalog.stream_length) + " duplicate_ids=" + std::to_string(duplicates) +
           " read_seconds=" + number(std::round(seconds_since(t0) * 10) / 10));
  if (!catalog.ignored_domains.empty()) {
    log_root("prepare: ignored domains (not in data.train_domains or data.heldout_domains): " +
             join(catalog.ignored_domains, ", "));
  }
  for (const auto& [domain, n] : catalog.counts) {  // every domain found, ignored ones too
    const bool ignored = std::find(catalog.ignored_domains.begin(), catalog.ignored_domains.end(), domain) !=
                         catalog.ignored_domains.end();
    if (n.invalid_utf8 || n.empty) {
      warn_root("prepare: domain " + domain + (ignored ? " (ignored)" : "") + ": skipped " +
                std::to_string(n.invalid_utf8) + " document(s) with invalid UTF-8 and " + std::to_string(n.empty) +
                " empty document(s) of " + std::to_string(n.documents));
    }
    if (n.duplicate_ids && !ignored) {
      warn_root("prepare: domain " + domain + ": " + std::to_string(n.duplicate_ids) +
                " document(s) share their id with an earlier document of the domain (kept; ids should be unique)");
    }
    if (n.over_cap) {
      log_root("prepare: domain " + domain + ": dropped " + std::to_string(n.over_cap) +
               " document(s) over data.max_mb_per_domain = " + number(data.max_mb_per_domain));
    }
  }

  TokenizerSample sample;
  if (train_tokenizer) sample = select_tokenizer_sample(catalog, data.tokenizer_sample_mb, deck.run.seed);

  // Pass 2 (every rank): the text of this rank's documents; rank 0 also keeps the sample.
  std::vector<SplitWork> work(catalog.splits.size());
  std::map<std::pair<std::size_t, std::size_t>, std::string> sample_texts;
  on_all(world, [&] {
    struct Want {
      std::uint64_t seq;
      std::size_t split, doc;
      bool mine, sample;
    };
    std::vector<Want> wants;
    for (std::size_t si = 0; si < catalog.splits.size(); ++si) {
      auto [b, e] = my_range(catalog.splits[si], world.rank(), world.size());
      work[si].begin = b;
      work[si].end = e;
      work[si].texts.resize(e - b);
      for (std::size_t i = b; i < e; ++i) wants.push_back({catalog.splits[si].seq[i], si, i, true, false});
    }
    if (world.is_root()) {
      for (const auto& domain : sample.per_domain) {
        for (const auto& [si, i] : domain) wants.push_back({catalog.splits[si].seq[i], si, i, false, true});
      }
    }
    std::sort(wants.begin(), wants.end(), [](const Want& a, const Want& b) { return a.seq < b.seq; });
    std::size_t next = 0;
    std::uint64_t seq = 0;
    for_each_document(data.corpus, format, [&](RawDocument& doc) {
      for (; next < wants.size() && wants[next].seq == seq; ++next) {
        const Want& w = wants[next];
        const SplitDocs& s = catalog.splits[w.split];
        if (doc.id != s.ids[w.doc] || doc.text.size() != s.bytes[w.doc]) {
          throw Error("prepare: the corpus changed while it was read (" + doc.where + " is not document " +
                      s.ids[w.doc] + " any more); run again");
        }
        if (w.sample) sample_texts[{w.split, w.doc}] = doc.text;
        if (w.mine) work[w.split].texts[w.doc - work[w.split].begin] = doc.text;
      }
      ++seq;
    });
    if (next != wants.size()) throw Error("prepare: the corpus changed while it was read (it is shorter); run again");
  });

  // The tokenizer: trained or loaded on rank 0, then the same bytes everywhere.
  const auto t_tok = Clock::now();
  if (train_tokenizer) model = on_root(world, [&] {
    auto lines = sample_lines(sample, sample_texts);
    std::uint64_t bytes = 0;
    for (auto l : lines) bytes += l.size() + 1;
    log_root("prepare: training tokenizer vocab_size=" + std::to_string(data.vocab_size) + " sample_MB=" +
             number(std::round(bytes / 1e4) / 100) + " lines=" + std::to_string(lines.size()) + " domains=" +
             std::to_string(catalog.train_domains.size()));
    return Tokenizer::train(lines, data.vocab_size);
  });
  sample_texts.clear();
  Tokenizer tokenizer(std::move(model));
  log_root("prepare: tokenizer vocab_size=" + std::to_string(tokenizer.vocab_size()) + " bos_id=" +
           std::to_string(tokenizer.bos_id()) + " eos_id=" + std::to_string(tokenizer.eos_id()) + " source=" +
           (train_tokenizer ? std::string("trained") : given.string()) +
           " seconds=" + number(std::round(seconds_since(t_tok) * 10) / 10));
  if (!train_tokenizer && tokenizer.vocab_size() != data.vocab_size) {
    log_root("prepare: note: data.vocab_size = " + std::to_string(data.vocab_size) + " is ignored; the tokenizer " +
             given.string() + " has " + std::to_string(tokenizer.vocab_size()) + " pieces");
  }
  if (tokenizer.eos_id() < 0) throw Error("data.tokenizer: " + given.string() + " defines no EOS piece (expected eos_id >= 0)");

  // Tokenize this rank's documents and agree on every document's offset.
  const auto t_enc = Clock::now();
  std::vector<std::uint64_t> counts;
  for (const auto& s : catalog.splits) counts.resize(counts.size() + s.ids.size(), 0);
  on_all(world, [&] {
    std::size_t base = 0;
    const auto eos = static_cast<std::uint32_t>(tokenizer.eos_id());
    for (std::size_t si = 0; si < work.size(); ++si) {
      SplitWork& w = work[si];
      for (std::size_t i = w.begin; i < w.end; ++i) {
        std::string& text = w.texts[i - w.begin];
        auto ids = tokenizer.encode(text);
        w.tokens.insert(w.tokens.end(), ids.begin(), ids.end());
        w.tokens.push_back(eos);
        counts[base + i] = ids.size() + 1;
        std::string().swap(text);  // the text is no longer needed
      }
      base += catalog.splits[si].ids.size();
    }
  });
  world.allreduce_sum(counts.data(), counts.size());
  {
    std::size_t base = 0;
    for (std::size_t si = 0; si < work.size(); ++si) {
      const std::size_t n = catalog.splits[si].ids.size();
      work[si].offsets.assign(n + 1, 0);
      for (std::size_t i = 0; i < n; ++i) work[si].offsets[i + 1] = work[si].offsets[i] + counts[base + i];
      base += n;
    }
  }
  const double encode_seconds = world.allreduce_max(seconds_since(t_enc));

  // Write: tokens collectively into a temporary file, the rest from rank 0, then rename.
  const bool narrow = tokenizer.vocab_size() <= 65536;
  const std::string tmp = on_root(world, [&] {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    return path.string() + ".tmp." + std::to_string(::getpid());
  });
  auto remove_tmp = [&] {
    if (world.is_root()) {
      std::error_code ec;
      fs::remove(tmp, ec);
    }
  };
  try {
    on_all(world, [&] {
      h5::File file(tmp, h5::File::Mode::create, world.handle());
      for (std::size_t si = 0; si < work.size(); ++si) {
        const SplitDocs& s = catalog.splits[si];
        SplitWork& w = work[si];
        const hsize_t total = w.offsets.back(), offset = w.offsets[w.begin], count = w.tokens.size();
        const std::string name = "/domains/" + s.domain + "/" + s.split + "/tokens";
        if (narrow) {
          std::vector<std::uint16_t> t16(w.tokens.begin(), w.tokens.end());
          write_collective_1d(file, name, H5T_STD_U16LE, H5T_NATIVE_UINT16, total, offset, count, t16.data());
        } else {
          write_collective_1d(file, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, total, offset, count, w.tokens.data());
        }
        std::vector<std::uint32_t>().swap(w.tokens);
      }
      file.close();
    });
    on_root(world, [&] {
      h5::File file(tmp, h5::File::Mode::read_write);
      const std::string& bytes = tokenizer.model_bytes();
      file.write<std::uint8_t>("/tokenizer/model", std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
      file.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", tokenizer.vocab_size());
      file.set_attr<std::int64_t>("/tokenizer/model", "bos_id", tokenizer.bos_id());
      file.set_attr<std::int64_t>("/tokenizer/model", "eos_id", tokenizer.eos_id());
      file.set_attr<std::int64_t>("/tokenizer/model", "unk_id", tokenizer.unk_id());
      file.set_attr<std::int64_t>("/tokenizer/model", "pad_id", tokenizer.pad_id());
      file.set_attr("/tokenizer/model", "source", train_tokenizer ? std::string("trained") : canonical_text(given));
      std::uint64_t invalid = 0, empty = 0;
      std::vector<std::string> used = catalog.train_domains;
      used.insert(used.end(), catalog.heldout_domains.begin(), catalog.heldout_domains.end());
      std::sort(used.begin(), used.end());
      for (const auto& domain : used) {
        const DomainCounts& n = catalog.counts.at(domain);
        const std::string g = "/domains/" + domain;
        file.create_group(g);
        file.set_attr("/domains/" + domain, "role", catalog.is_heldout(domain) ? std::string("heldout") : std::string("train"));
        file.set_attr<std::uint64_t>(g, "documents", n.documents);
        file.set_attr<std::uint64_t>(g, "skipped_invalid_utf8", n.invalid_utf8);
        file.set_attr<std::uint64_t>(g, "skipped_empty", n.empty);
        file.set_attr<std::uint64_t>(g, "dropped_over_cap", n.over_cap);
        invalid += n.invalid_utf8;
        empty += n.empty;
      }
      for (std::size_t si = 0; si < work.size(); ++si) {
        const SplitDocs& s = catalog.splits[si];
        const std::string g = "/domains/" + s.domain + "/" + s.split;
        file.write<std::uint64_t>(g + "/doc_offsets", work[si].offsets);
        file.write_strings(g + "/doc_ids", s.ids);
        file.set_attr<std::uint64_t>(g, "text_bytes", s.total_bytes);
      }
      file.set_attr("/domains", "train", join(catalog.train_domains));
      file.set_attr("/domains", "heldout", join(catalog.heldout_domains));
      file.set_attr<std::uint64_t>("/domains", "skipped_invalid_utf8", invalid);
      file.set_attr<std::uint64_t>("/domains", "skipped_empty", empty);
      file.set_attr("/meta", "deck", to_toml(deck));
      file.set_attr("/meta", "version", std::string(BTM_VERSION));
      file.set_attr("/meta", "phase", std::string("prepare"));
      file.set_attr("/meta", "data_settings", settings_text(settings));
      file.flush();
      file.close();
      h5::sync_to_disk(tmp);
      std::error_code ec;
      fs::rename(tmp, path, ec);
      if (ec) throw Error("cannot move " + tmp + " to " + path.string() + ": " + ec.message());
      h5::sync_to_disk(path.has_parent_path() ? path.parent_path() : fs::path("."));
      return std::string();
    });
  } catch (...) {
    remove_tmp();
    throw;
  }
  log_root("prepare: wrote " + path.string() + " tokens_dtype=" + (narrow ? "uint16" : "uint32") +
           " encode_seconds=" + number(std::round(encode_seconds * 10) / 10));
  if (world.is_root()) log_summary(catalog, work, seconds_since(t0));
}

}  // namespace btm
