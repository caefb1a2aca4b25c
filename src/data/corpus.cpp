#include "btm/data/corpus.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <memory>
#include <sstream>
#include <vector>

#include "btm/data/json.hpp"
#include "btm/data/split.hpp"
#include "btm/error.hpp"
#include "config/schema.hpp"  // is_name, kNameRule: the deck's rule for names that become file names

namespace btm {

namespace fs = std::filesystem;

const char* corpus_format_name(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::jsonl: return "jsonl";
    case CorpusFormat::text_tree: return "text_tree";
    case CorpusFormat::split_jsonl: return "split_jsonl";
  }
  return "?";
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return false;  // continuation byte, overlong lead (C0, C1) or > F4
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;  // surrogates are not characters
    i += len;
  }
  return true;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

namespace {

// Lines of a plain or gzip-compressed file (zlib reads both), without the trailing "\n"
// or "\r\n".
class LineReader {
 public:
  explicit LineReader(const fs::path& path) : path_(path), buf_(1 << 20) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw Error("cannot open " + path.string() + " for reading");
    gzbuffer(file_, 1 << 18);
  }
  ~LineReader() {
    if (file_) gzclose(file_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool next(std::string& line) {
    line.clear();
    for (;;) {
      if (pos_ == end_) {
        if (eof_) {
          if (line.empty() && !partial_) return false;
          partial_ = false;
          if (!line.empty() && line.back() == '\r') line.pop_back();
          return true;  // last line without a newline
        }
        refill();
        continue;
      }
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', end_ - pos_);
      if (!nl) {
        line.append(start, end_ - pos_);
        partial_ = true;
        pos_ = end_;
        continue;
      }
      std::size_t len = static_cast<const char*>(nl) - start;
      line.append(start, len);
      pos_ += len + 1;
      partial_ = false;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
  }

 private:
  [[noreturn]] void corrupt(const char* zlib_message) {
    throw Error(path_.string() + ": truncated or corrupt gzip stream (zlib: " +
                (zlib_message && *zlib_message ? zlib_message : "read error") +
                "; expected a complete .gz file: copy or download it again)");
  }

  void refill() {
    int got = gzread(file_, buf_.data(), static_cast<unsigned>(buf_.size()));
    int code = Z_OK;
    const char* msg = gzerror(file_, &code);
    // zlib reports a stream that ends early (a cut file, a missing trailer) as Z_BUF_ERROR
    // and still returns the bytes it could decode; any other error comes with got < 0.
    // Either way the file is not complete: stop before the partial last line is parsed.
    if (got < 0 || code == Z_BUF_ERROR || (code != Z_OK && code != Z_STREAM_END)) corrupt(msg);
    pos_ = 0;
    end_ = static_cast<std::size_t>(got);
    if (got == 0) {
      eof_ = true;
      int rc = gzclose(file_);  // Z_BUF_ERROR: the last read ended inside a gzip stream
      file_ = nullptr;
      if (rc != Z_OK) corrupt(rc == Z_BUF_ERROR ? "unexpected end of file" : "close failed");
    }
  }

  fs::path path_;
  gzFile file_ = nullptr;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false, partial_ = false;
};

// Domain names become HDF5 groups, experts and file names: the deck's name rule.
void check_domain_name(const std::string& domain, const std::string& where) {
  if (!deck::is_name(domain)) {
    throw Error(where + ": bad domain name " + deck::toml_quote(domain) + " (expected " + deck::kNameRule + ")");
  }
}

std::string string_member(const std::map<std::string, JsonValue>& obj, const std::string& key,
                          bool required, bool allow_number, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) throw Error(where + ": missing member \"" + key + "\" (expected a string)");
    return {};
  }
  if (it->second.type == JsonType::string) return it->second.text;
  if (allow_number && it->second.type == JsonType::number) return it->second.text;
  throw Error(where + ": member \"" + key + "\" is " + json_type_name(it->second.type) +
              ", expected a string" + (allow_number ? " or a number" : ""));
}

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// One JSONL file. `domain_dir`/`split_file` are set for the split_jsonl layout, where the
// folder and file name say the domain and split; members that say otherwise are errors.
void read_jsonl(const fs::path& path, const std::string& domain_dir, const std::string& split_file,
                const std::function<void(RawDocument&)>& visit) {
  LineReader reader(path);
  std::string line;
  std::uint64_t number = 0;
  RawDocument doc;
  while (reader.next(line)) {
    ++number;
    if (number == 1 && line.rfind(kUtf8Bom, 0) == 0) line.erase(0, kUtf8Bom.size());  // editors add one
    if (is_blank(line)) continue;
    std::string where = path.string() + ":" + std::to_string(number);
    std::map<std::string, JsonValue> obj;
    try {
      obj = parse_json_object(line);
    } catch (const JsonError& e) {
      throw Error(where + ": " + e.what() + " (expected one JSON object per line with \"text\" and \"domain\")");
    }
    doc.text = string_member(obj, "text", true, false, where);
    std::string domain = string_member(obj, "domain", domain_dir.empty(), false, where);
    if (!domain_dir.empty()) {
      if (!domain.empty() && domain != domain_dir) {
        throw Error(where + ": \"domain\" is \"" + domain + "\" but the file is in the folder of domain \"" +
                    domain_dir + "\"");
      }
      domain = domain_dir;
    }
    check_domain_name(domain, where);
    std::string split = string_member(obj, "split", false, false, where);
    if (!split.empty() && !is_split_name(split)) {
      throw Error(where + ": \"split\" is \"" + split + "\", expected train, valid or test");
    }
    if (!split_file.empty()) {
      if (!split.empty() && split != split_file) {
        throw Error(where + ": \"split\" is \"" + split + "\" but the file is " + split_file + ".jsonl");
      }
      split = split_file;
    }
    std::string id = string_member(obj, "id", false, true, where);
    if (obj.find("id") == obj.end()) id = fallback_document_id(domain, doc.text);
    doc.domain = std::move(domain);
    doc.split = std::move(split);
    doc.id = std::move(id);
    doc.where = std::move(where);
    visit(doc);
  }
}

bool is_hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

// Non-hidden entries of a folder, sorted byte-wise by name (the file system's order is not
// stable across machines).
std::vector<fs::directory_entry> sorted_entries(const fs::path& dir) {
  std::vector<fs::directory_entry> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!is_hidden(it->path())) out.push_back(*it);
  }
  if (ec) throw Error("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.path().filename().string() < b.path().filename().string();
  });
  return out;
}

std::vector<fs::path> domain_dirs(const fs::path& corpus) {
  std::vector<fs::path> out;
  for (const auto& e : sorted_entries(corpus)) {
    std::error_code ec;
    if (e.is_directory(ec)) out.push_back(e.path());
    if (ec) throw Error(e.path().string() + ": cannot read (" + ec.message() + ")");
  }
  return out;
}

// The split file of one split in a split_jsonl domain folder ("" when absent).
fs::path split_file(const fs::path& dir, const std::string& split) {
  fs::path plain = dir / (split + ".jsonl"), gz = dir / (split + ".jsonl.gz");
  bool has_plain = fs::is_regular_file(plain), has_gz = fs::is_regular_file(gz);
  if (has_plain && has_gz) {
    throw Error(dir.string() + ": both " + split + ".jsonl and " + split +
                ".jsonl.gz exist (expected one file per split)");
  }
  return has_plain ? plain : has_gz ? gz : fs::path();
}

bool is_split_file_name(const std::string& name) {
  for (const char* s : kSplits) {
    if (name == std::string(s) + ".jsonl" || name == std::string(s) + ".jsonl.gz") return true;
  }
  return false;
}

// The split_jsonl layout: some domain folder holds a {train,valid,test}.jsonl[.gz] file.
// Stray entries next to them are the split_jsonl reader's to name, not a reason to read
// the JSON lines as plain text.
bool looks_like_split_jsonl(const fs::path& corpus) {
  for (const auto& d : domain_dirs(corpus)) {
    for (const auto& e : sorted_entries(d)) {
      if (e.is_regular_file() && is_split_file_name(e.path().filename().string())) return true;
    }
  }
  return false;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A text tree reads every file as one plain-text document: JSONL and compressed files are
// another format, not text.
void check_tree_file(const fs::path& file) {
  const std::string name = file.filename().string();
  if (ends_with(name, ".jsonl") || ends_with(name, ".jsonl.gz")) {
    throw Error(file.string() + ": a JSONL file in a text_tree corpus (text_tree reads every file as one "
                "plain-text document); for <domain>/<split>.jsonl[.gz] files set data.format = \"split_jsonl\", "
                "for one JSONL file set data.corpus to it with data.format = \"jsonl\"");
  }
  if (ends_with(name, ".gz")) {
    throw Error(file.string() + ": a gzip file in a text_tree corpus (text_tree reads plain-text files only); "
                "decompress it, or for <domain>/<split>.jsonl.gz files set data.format = \"split_jsonl\"");
  }
}

// Files of a text-tree domain, recursively, sorted by their path relative to the domain.
// Symbolic links are followed, but one back to a folder already read (a cycle) or one that
// never resolves (a loop) is an error naming the link.
std::vector<fs::path> tree_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::set<fs::path> folders_read{fs::canonical(dir)};
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    const bool is_dir = it->is_directory(type_ec);
    const bool is_file = !type_ec && it->is_regular_file(type_ec);
    if (type_ec) throw Error(it->path().string() + ": cannot read (" + type_ec.message() + ")");
    if (is_hidden(it->path())) {
      if (is_dir) it.disable_recursion_pending();
      continue;
    }
    if (is_dir && !folders_read.insert(fs::canonical(it->path())).second) {
      throw Error(it->path().string() + ": a symbolic link to " + fs::canonical(it->path()).string() +
                  ", a folder the corpus already reads (a cycle or a duplicate); remove the link");
    }
    if (is_file) {
      check_tree_file(it->path());
      out.push_back(it->path());
    }
  }
  if (ec) throw Error("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [&](const fs::path& a, const fs::path& b) {
    return a.lexically_relative(dir).generic_string() < b.lexically_relative(dir).generic_string();
  });
  return out;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + " for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path.string());
  return ss.str();
}

}  // namespace

CorpusFormat resolve_corpus_format(const fs::path& corpus, const std::string& format) {
  if (corpus.empty()) throw Error("data.corpus is not set (expected a JSONL file or a corpus folder)");
  std::error_code ec;
  auto status = fs::status(corpus, ec);
  if (ec || !fs::exists(status)) {
    throw Error("corpus not found: " + corpus.string() +
                " (data.corpus: expected a .jsonl/.jsonl.gz file or a folder of domains)");
  }
  bool dir = fs::is_directory(status);
  auto need_dir = [&](const char* name) {
    if (!dir) throw Error("data.format = \"" + std::string(name) + "\" expects a folder, but " + corpus.string() + " is a file");
  };
  if (format == "jsonl") {
    if (dir) throw Error("data.format = \"jsonl\" expects a file, but " + corpus.string() + " is a folder");
    return CorpusFormat::jsonl;
  }
  if (format == "text_tree") return need_dir("text_tree"), CorpusFormat::text_tree;
  if (format == "split_jsonl") return need_dir("split_jsonl"), CorpusFormat::split_jsonl;
  if (format != "auto") {
    throw Error("data.format = \"" + format + "\": expected one of auto, jsonl, text_tree, split_jsonl");
  }
  if (!dir) {
    const std::string name = corpus.filename().string();
    if (!ends_with(name, ".jsonl") && !ends_with(name, ".jsonl.gz")) {
      throw Error("corpus " + corpus.string() +
                  ": cannot tell its format (expected a .jsonl or .jsonl.gz file, or a folder; or set data.format)");
    }
    return CorpusFormat::jsonl;
  }
  return looks_like_split_jsonl(corpus) ? CorpusFormat::split_jsonl : CorpusFormat::text_tree;
}

void for_each_document(const fs::path& corpus, CorpusFormat format,
                       const std::function<void(RawDocument&)>& visit) {
  switch (format) {
    case CorpusFormat::jsonl:
      read_jsonl(corpus, "", "", visit);
      return;
    case CorpusFormat::split_jsonl:
      for (const auto& dir : domain_dirs(corpus)) {
        std::string domain = dir.filename().string();
        check_domain_name(domain, dir.string());
        for (const auto& e : sorted_entries(dir)) {
          if (!e.is_regular_file() || !is_split_file_name(e.path().filename().string())) {
            throw Error(e.path().string() + ": unexpected entry in a split_jsonl corpus "
                        "(expected only train/valid/test.jsonl[.gz] in each domain folder)");
          }
        }
        for (const char* split : kSplits) {
          fs::path file = split_file(dir, split);
          if (!file.empty()) read_jsonl(file, domain, split, visit);
        }
      }
      return;
    case CorpusFormat::text_tree: {
      RawDocument doc;
      for (const auto& dir : domain_dirs(corpus)) {
        std::string domain = dir.filename().string();
        check_domain_name(domain, dir.string());
        for (const auto& file : tree_files(dir)) {
          doc.domain = domain;
          doc.split.clear();
          doc.id = file.lexically_relative(corpus).generic_string();
          doc.text = read_file(file);
          doc.where = file.string();
          visit(doc);
        }
      }
      return;
    }
  }
}

std::vector<std::string> domain_folders(const fs::path& corpus, CorpusFormat format) {
  std::vector<std::string> out;
  if (format == CorpusFormat::jsonl) return out;
  for (const auto& dir : domain_dirs(corpus)) out.push_back(dir.filename().string());
  return out;
}

std::string fallback_document_id(const std::string& domain, std::string_view text) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(text)));
  return domain + "/" + hex;
}

std::uint64_t corpus_file_bytes(const fs::path& corpus, CorpusFormat format) {
  std::uint64_t total = 0;
  switch (format) {
    case CorpusFormat::jsonl: return fs::file_size(corpus);
    case CorpusFormat::split_jsonl:
      for (const auto& dir : domain_dirs(corpus)) {
        for (const char* split : kSplits) {
          fs::path file = split_file(dir, split);
          if (!file.empty()) total += fs::file_size(file);
        }
      }
      return total;
    case CorpusFormat::text_tree:
      for (const auto& dir : domain_dirs(corpus)) {
        for (const auto& file : tree_files(dir)) total += fs::file_size(file);
      }
      return total;
  }
  return total;
}

}  // namespace btm
