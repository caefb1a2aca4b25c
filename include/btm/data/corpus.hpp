#pragma once
// Corpus readers: documents with a domain label (and maybe a split) from
//   jsonl        one file, .jsonl or .jsonl.gz: {"text", "domain", "id"?, "split"?} per line
//                (a UTF-8 byte order mark at the start of a file is skipped)
//   text_tree    a folder: <domain>/<any/depth/file>; id = path relative to the folder;
//                plain text only (.jsonl and .gz files are refused: another format)
//   split_jsonl  a folder: <domain>/<split>.jsonl[.gz] (the layout of corpora/paper8)
// A JSONL document without "id" gets fallback_document_id(domain, text): it depends on the
// text alone, so inserting or removing lines never moves other documents between splits.
// Domain names follow the deck's name rule (letters, digits, '.', '_', '-', '+', not
// starting with '.'), since they become HDF5 groups and expert names.
// A gzip file that ends early or does not decode is an error ("truncated or corrupt gzip
// stream"), never a shorter corpus.
// Documents come out in a fixed corpus order, the same on every machine: lines in file
// order; folders and files in byte-wise sorted name order; splits train, valid, test.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace btm {

enum class CorpusFormat { jsonl, text_tree, split_jsonl };
const char* corpus_format_name(CorpusFormat format);

// data.format resolved against the corpus path: "auto" picks jsonl for a file, split_jsonl
// for a folder with a sub-folder that holds a {train,valid,test}.jsonl[.gz] file (its reader
// then names any other entry), else text_tree.
// Throws when the path does not exist or the name is not a format.
CorpusFormat resolve_corpus_format(const std::filesystem::path& corpus, const std::string& format);

struct RawDocument {
  std::string domain;
  std::string split;  // "" when the corpus gives none
  std::string id;
  std::string text;   // as stored: not yet checked for UTF-8 or emptiness
  std::string where;  // "file:line" (JSONL) or the file path (text tree), for messages
};

// Calls visit(doc) for every document in corpus order. Throws btm::Error naming file:line
// and what was expected on a malformed line, a bad domain or split name, or an unreadable
// file. `visit` may move the text out.
void for_each_document(const std::filesystem::path& corpus, CorpusFormat format,
                       const std::function<void(RawDocument&)>& visit);

// The domain folders of a text_tree or split_jsonl corpus, sorted, empty ones included
// (none for jsonl): a folder without documents is still a domain the deck may name.
std::vector<std::string> domain_folders(const std::filesystem::path& corpus, CorpusFormat format);

// "<domain>/<16 lowercase hex digits of fnv1a64(text)>" (btm/data/split.hpp).
std::string fallback_document_id(const std::string& domain, std::string_view text);

// Bytes of every file the corpus is read from (a cheap fingerprint of its content).
std::uint64_t corpus_file_bytes(const std::filesystem::path& corpus, CorpusFormat format);

bool is_valid_utf8(std::string_view text);  // strict: no overlongs, surrogates or > U+10FFFF
bool is_blank(std::string_view text);       // empty or only ASCII whitespace

}  // namespace btm
