#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "btm/config.hpp"
#include "btm/data/catalog.hpp"
#include "btm/data/corpus.hpp"
#include "btm/data/loader.hpp"
#include "btm/data/split.hpp"
#include "btm/error.hpp"
#include "support/error_of.hpp"
#include "support/test_paths.hpp"

namespace fs = std::filesystem;
using btm::CorpusFormat;

using btm::test::error_of;

namespace {

fs::path fixtures() { return btm::test::test_data_dir() / "fixtures"; }

std::vector<btm::RawDocument> read_all(const fs::path& corpus, const std::string& format = "auto") {
  std::vector<btm::RawDocument> docs;
  btm::for_each_document(corpus, btm::resolve_corpus_format(corpus, format),
                         [&](btm::RawDocument& d) { docs.push_back(d); });
  return docs;
}

void write_gz(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  gzFile g = gzopen(path.c_str(), "wb");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(gzwrite(g, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(g);
}

btm::DataConfig config(const fs::path& corpus) {
  btm::DataConfig d;
  d.corpus = corpus;
  return d;
}

}  // namespace

TEST(Corpus, ReadsSplitJsonlLayoutWithSplitsFromFileNames) {
  auto corpus = fixtures() / "split_jsonl";
  EXPECT_EQ(btm::resolve_corpus_format(corpus, "auto"), CorpusFormat::split_jsonl);
  auto docs = read_all(corpus);
  ASSERT_EQ(docs.size(), 3u * 20 + 8);
  // Corpus order: domains sorted, splits train, valid, test, lines in file order.
  EXPECT_EQ(docs.front().domain, "code-go");
  EXPECT_EQ(docs.front().split, "train");
  EXPECT_EQ(docs[12].split, "valid");
  EXPECT_EQ(docs[16].split, "test");
  EXPECT_EQ(docs.back().domain, "tech-lexicon");
  EXPECT_EQ(docs.back().split, "test");
  EXPECT_NE(docs.front().where.find("code-go/train.jsonl.gz:1"), std::string::npos);
  for (const auto& d : docs) {
    EXPECT_EQ(d.id.rfind(d.domain + "/", 0), 0u) << d.id;
    EXPECT_TRUE(btm::is_valid_utf8(d.text));
    EXPECT_GT(d.text.size(), 100u);
  }
}

TEST(Corpus, ReadsJsonlWithDefaultIdsAndNoSplits) {
  auto corpus = fixtures() / "mixed.jsonl";
  EXPECT_EQ(btm::resolve_corpus_format(corpus, "auto"), CorpusFormat::jsonl);
  auto docs = read_all(corpus);
  ASSERT_EQ(docs.size(), 30u);
  EXPECT_EQ(docs[0].domain, "scripture");
  // No "id" member: <domain>/<16 hex digits of a hash of the text>.
  EXPECT_EQ(docs[0].id, btm::fallback_document_id("scripture", docs[0].text));
  EXPECT_EQ(docs[3].id, btm::fallback_document_id("scripture", docs[3].text));
  EXPECT_EQ(docs[0].id.size(), std::string("scripture/").size() + 16);
  EXPECT_NE(docs[1].id, btm::fallback_document_id("scripture", docs[1].text));  // given ids are kept
  EXPECT_EQ(docs[29].domain, "dictionary");
  for (const auto& d : docs) EXPECT_EQ(d.split, "");
}

TEST(Corpus, ReadsGzipJsonlAndGivenSplits) {
  auto dir = btm::test::fresh_dir("corpus_gz");
  write_gz(dir / "c.jsonl.gz",
           "{\"text\": \"one\\n\", \"domain\": \"a\", \"split\": \"valid\"}\r\n"
           "\n"
           "{\"text\": \"two\", \"domain\": \"b\", \"id\": 17}\n"
           "{\"text\": \"three\", \"domain\": \"a\", \"split\": \"test\", \"id\": \"x\"}");  // no final newline
  auto docs = read_all(dir / "c.jsonl.gz");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "one\n");
  EXPECT_EQ(docs[0].split, "valid");
  EXPECT_EQ(docs[0].id, btm::fallback_document_id("a", "one\n"));
  EXPECT_EQ(docs[1].id, "17");
  EXPECT_EQ(docs[1].where, (dir / "c.jsonl.gz").string() + ":3");
  EXPECT_EQ(docs[2].text, "three");
  EXPECT_EQ(docs[2].split, "test");

  // A line far longer than the reader's buffer.
  std::string big(3'000'000, 'x');
  for (std::size_t i = 0; i < big.size(); i += 1000) big[i] = ' ';
  write_gz(dir / "big.jsonl.gz", "{\"text\": \"a\", \"domain\": \"a\"}\n{\"text\": \"" + big +
                                     "\", \"domain\": \"a\"}\n{\"text\": \"z\", \"domain\": \"a\"}\n");
  docs = read_all(dir / "big.jsonl.gz");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[1].text, big);
  EXPECT_EQ(docs[2].id, btm::fallback_document_id("a", "z"));
}

TEST(Corpus, ReadsTextTreeWithRelativePathIds) {
  auto corpus = fixtures() / "text_tree";
  EXPECT_EQ(btm::resolve_corpus_format(corpus, "auto"), CorpusFormat::text_tree);
  auto docs = read_all(corpus);
  ASSERT_EQ(docs.size(), 12u);
  std::map<std::string, int> per_domain;
  for (const auto& d : docs) {
    ++per_domain[d.domain];
    EXPECT_EQ(d.id.rfind(d.domain + "/", 0), 0u);
    EXPECT_EQ(d.split, "");
  }
  EXPECT_EQ(per_domain, (std::map<std::string, int>{{"code-go", 4}, {"dictionary", 4}, {"scripture", 4}}));
  EXPECT_EQ(docs[0].id, "code-go/go1.19/src/cmd/compile/internal/noder/export.go");
  EXPECT_EQ(docs[11].id, "scripture/kjv/SSol6.txt");
  EXPECT_EQ(docs[0].text, btm::test::read_text(corpus / docs[0].id));
}

TEST(Corpus, MalformedLinesNameFileLineAndExpectation) {
  auto dir = btm::test::fresh_dir("corpus_bad");
  struct Case {
    std::string line, says;
  };
  const Case cases[] = {
      {"{\"text\": \"x\", \"domain\": \"a\"", "column 28: expected ',' or '}'"},
      {"{\"domain\": \"a\"}", "missing member \"text\""},
      {"{\"text\": \"x\"}", "missing member \"domain\""},
      {"{\"text\": 5, \"domain\": \"a\"}", "\"text\" is a number, expected a string"},
      {"{\"text\": \"x\", \"domain\": [\"a\"]}", "\"domain\" is an array"},
      {"{\"text\": \"x\", \"domain\": \"a/b\"}", "bad domain name \"a/b\""},
      {"{\"text\": \"x\", \"domain\": \"\"}", "bad domain name"},
      {"{\"text\": \"x\", \"domain\": \"a\", \"split\": \"dev\"}", "expected train, valid or test"},
      {"{\"text\": \"x\", \"domain\": \"a\", \"id\": null}", "\"id\" is null"},
  };
  for (const auto& c : cases) {
    auto file = dir / "bad.jsonl";
    btm::test::write_text(file, "{\"text\": \"fine\", \"domain\": \"a\"}\n" + c.line + "\n");
    std::string msg = error_of([&] { read_all(file); });
    EXPECT_NE(msg.find(file.string() + ":2: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << c.line << " -> " << msg;
  }
}

TEST(Corpus, SplitJsonlRejectsDisagreeingMembersAndStrayFiles) {
  auto dir = btm::test::fresh_dir("corpus_split_bad");
  write_gz(dir / "a" / "train.jsonl.gz", "{\"text\": \"x\", \"domain\": \"b\"}\n");
  std::string msg = error_of([&] { read_all(dir, "split_jsonl"); });
  EXPECT_NE(msg.find("train.jsonl.gz:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("folder of domain \"a\""), std::string::npos) << msg;

  write_gz(dir / "a" / "train.jsonl.gz", "{\"text\": \"x\", \"split\": \"test\"}\n");
  msg = error_of([&] { read_all(dir, "split_jsonl"); });
  EXPECT_NE(msg.find("\"split\" is \"test\""), std::string::npos) << msg;

  write_gz(dir / "a" / "train.jsonl.gz", "{\"text\": \"x\"}\n");
  btm::test::write_text(dir / "a" / "notes.txt", "stray");
  msg = error_of([&] { read_all(dir, "split_jsonl"); });
  EXPECT_NE(msg.find("notes.txt: unexpected entry"), std::string::npos) << msg;
}

TEST(Corpus, TruncatedGzipIsAnError) {
  auto dir = btm::test::fresh_dir("corpus_trunc");
  std::string body;
  for (int i = 0; i < 2000; ++i) body += "{\"text\": \"line " + std::to_string(i) + " of some text\", \"domain\": \"a\"}\n";
  write_gz(dir / "c.jsonl.gz", body);
  std::string bytes = btm::test::read_text(dir / "c.jsonl.gz");
  btm::test::write_text(dir / "c.jsonl.gz", bytes.substr(0, bytes.size() / 2));
  std::string msg = error_of([&] { read_all(dir / "c.jsonl.gz"); });
  EXPECT_NE(msg.find("c.jsonl.gz"), std::string::npos) << msg;
}

TEST(Corpus, MissingCorpusAndUnknownFormatAreErrors) {
  std::string msg = error_of([] { btm::resolve_corpus_format("/no/such/corpus.jsonl", "auto"); });
  EXPECT_NE(msg.find("corpus not found: /no/such/corpus.jsonl"), std::string::npos) << msg;
  msg = error_of([] { btm::build_catalog(config("/no/such/dir")); });
  EXPECT_NE(msg.find("/no/such/dir"), std::string::npos) << msg;
  msg = error_of([] { btm::resolve_corpus_format(fixtures() / "mixed.jsonl", "parquet"); });
  EXPECT_NE(msg.find("expected one of auto, jsonl, text_tree, split_jsonl"), std::string::npos) << msg;
  msg = error_of([] { btm::resolve_corpus_format(fixtures() / "mixed.jsonl", "text_tree"); });
  EXPECT_NE(msg.find("expects a folder"), std::string::npos) << msg;
  msg = error_of([] { btm::resolve_corpus_format(fixtures() / "make_fixtures.py", "auto"); });
  EXPECT_NE(msg.find("cannot tell its format"), std::string::npos) << msg;
}

TEST(Catalog, ListedDomainWithoutDocumentsListsTheDomainsFound) {
  auto d = config(fixtures() / "split_jsonl");
  d.train_domains = {"scripture", "medical"};
  std::string msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.train_domains: domain \"medical\" has no documents"), std::string::npos) << msg;
  EXPECT_NE(msg.find("domains found: code-go, dictionary, scripture, tech-lexicon"), std::string::npos) << msg;

  d.train_domains = {};
  d.heldout_domains = {"reviews"};
  msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.heldout_domains: domain \"reviews\""), std::string::npos) << msg;

  d.train_domains = {"scripture"};
  d.heldout_domains = {"scripture"};
  msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("in both data.train_domains and data.heldout_domains"), std::string::npos) << msg;
}

TEST(Catalog, ResolvesTrainAndHeldOutDomains) {
  auto d = config(fixtures() / "split_jsonl");
  d.heldout_domains = {"tech-lexicon"};
  auto c = btm::build_catalog(d);
  EXPECT_EQ(c.format, CorpusFormat::split_jsonl);
  EXPECT_EQ(c.train_domains, (std::vector<std::string>{"code-go", "dictionary", "scripture"}));
  EXPECT_EQ(c.heldout_domains, (std::vector<std::string>{"tech-lexicon"}));
  EXPECT_TRUE(c.ignored_domains.empty());
  EXPECT_EQ(c.splits.size(), 3u * 3 + 2);
  ASSERT_NE(c.find("scripture", "train"), nullptr);
  EXPECT_EQ(c.find("scripture", "train")->ids.size(), 12u);
  EXPECT_EQ(c.find("tech-lexicon", "train"), nullptr);
  EXPECT_EQ(c.counts.at("code-go").documents, 20u);

  d.train_domains = {"scripture"};
  c = btm::build_catalog(d);
  EXPECT_EQ(c.ignored_domains, (std::vector<std::string>{"code-go", "dictionary"}));
  EXPECT_EQ(c.splits.size(), 3u + 2);
}

TEST(Catalog, InvalidUtf8AndEmptyDocumentsAreCountedAndSkipped) {
  auto dir = btm::test::fresh_dir("catalog_skip");
  btm::test::write_text(dir / "c.jsonl",
                        "{\"text\": \"good one\", \"domain\": \"a\", \"split\": \"train\"}\n"
                        "{\"text\": \"caf\xE9 latin-1\", \"domain\": \"a\", \"split\": \"train\"}\n"
                        "{\"text\": \"  \\n\\t \", \"domain\": \"a\", \"split\": \"train\"}\n"
                        "{\"text\": \"\", \"domain\": \"b\", \"split\": \"train\"}\n"
                        "{\"text\": \"lone \\ud800 surrogate\", \"domain\": \"b\", \"split\": \"train\"}\n"
                        "{\"text\": \"good two\", \"domain\": \"b\", \"split\": \"train\"}\n");
  auto c = btm::build_catalog(config(dir / "c.jsonl"));
  EXPECT_EQ(c.counts.at("a").documents, 3u);
  EXPECT_EQ(c.counts.at("a").invalid_utf8, 1u);
  EXPECT_EQ(c.counts.at("a").empty, 1u);
  EXPECT_EQ(c.counts.at("b").invalid_utf8, 1u);
  EXPECT_EQ(c.counts.at("b").empty, 1u);
  ASSERT_NE(c.find("a", "train"), nullptr);
  EXPECT_EQ(c.find("a", "train")->ids, (std::vector<std::string>{btm::fallback_document_id("a", "good one")}));
  EXPECT_EQ(c.find("b", "train")->ids, (std::vector<std::string>{btm::fallback_document_id("b", "good two")}));
  EXPECT_EQ(c.find("b", "train")->seq, (std::vector<std::uint64_t>{5}));
  EXPECT_EQ(c.stream_length, 6u);

  // A listed domain whose documents were all skipped has "no usable documents".
  btm::test::write_text(dir / "d.jsonl",
                        "{\"text\": \"ok\", \"domain\": \"a\"}\n{\"text\": \" \", \"domain\": \"z\"}\n");
  auto d = config(dir / "d.jsonl");
  d.train_domains = {"a", "z"};
  std::string msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.train_domains: domain 'z' in " + (dir / "d.jsonl").string() +
                     " has no usable documents (0 invalid UTF-8, 1 empty)"),
            std::string::npos)
      << msg;
}

TEST(Catalog, MaxMbPerDomainKeepsThePrefixOfEachSplit) {
  auto d = config(fixtures() / "split_jsonl");
  auto full = btm::build_catalog(d);
  d.max_mb_per_domain = 0.004;  // 4000 bytes
  auto c = btm::build_catalog(d);
  const auto* f = full.find("scripture", "train");
  const auto* s = c.find("scripture", "train");
  ASSERT_TRUE(f && s);
  ASSERT_LT(s->ids.size(), f->ids.size());
  EXPECT_LE(s->total_bytes, 4000u);
  EXPECT_GT(s->total_bytes + f->bytes[s->ids.size()], 4000u);  // the next one would overflow
  for (std::size_t i = 0; i < s->ids.size(); ++i) EXPECT_EQ(s->ids[i], f->ids[i]);
  EXPECT_EQ(c.counts.at("scripture").over_cap, (f->ids.size() - s->ids.size()) +
                                                   (full.find("scripture", "valid")->ids.size() - c.find("scripture", "valid")->ids.size()) +
                                                   (full.find("scripture", "test")->ids.size() - c.find("scripture", "test")->ids.size()));
}

TEST(HashSplit, IsStableAndDocumented) {
  // FNV-1a 64 reference values.
  EXPECT_EQ(btm::fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(btm::fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(btm::fnv1a64("foobar"), 0x85944171f73967e8ull);
  // The split of an id never changes (pinned values: a change breaks every prepared corpus).
  EXPECT_EQ(btm::hash_split("scripture/kjv/Ge1", false, 0.05, 0.05), btm::hash_split("scripture/kjv/Ge1", false, 0.05, 0.05));
  double u = btm::id_unit_hash("doc/1");
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
  EXPECT_DOUBLE_EQ(u, static_cast<double>(btm::mix64(btm::fnv1a64("doc/1")) >> 11) * 0x1.0p-53);
}

TEST(HashSplit, IsRoughlyProportional) {
  std::map<std::string, int> train, heldout;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::string id = "domain/doc-" + std::to_string(i);
    ++train[btm::hash_split(id, false, 0.1, 0.2)];
    ++heldout[btm::hash_split(id, true, 0.1, 0.2)];
  }
  EXPECT_NEAR(train["valid"] / double(n), 0.1, 0.01);
  EXPECT_NEAR(train["test"] / double(n), 0.2, 0.01);
  EXPECT_NEAR(train["train"] / double(n), 0.7, 0.015);
  EXPECT_EQ(heldout.count("train"), 0u);
  EXPECT_NEAR(heldout["valid"] / double(n), 0.5, 0.015);
}

TEST(Catalog, HashSplitsJsonlWithoutSplitsAndHeldOutGetsNoTrain) {
  auto d = config(fixtures() / "mixed.jsonl");
  d.heldout_domains = {"dictionary"};
  d.valid_fraction = 0.2;
  d.test_fraction = 0.2;
  auto c = btm::build_catalog(d);
  EXPECT_EQ(c.find("dictionary", "train"), nullptr);
  std::size_t total = 0;
  for (const auto& s : c.splits) {
    for (const auto& id : s.ids) {
      EXPECT_EQ(s.split, btm::hash_split(id, s.domain == "dictionary", 0.2, 0.2)) << id;
      ++total;
    }
  }
  EXPECT_EQ(total, 30u);
}

TEST(TokenizerSample, IsBalancedAcrossTrainDomainsAndSeeded) {
  auto d = config(fixtures() / "split_jsonl");
  d.heldout_domains = {"tech-lexicon"};
  auto c = btm::build_catalog(d);
  auto a = btm::select_tokenizer_sample(c, 0.006, 1);  // 2000 bytes per domain
  EXPECT_EQ(a.budget, 2000u);
  ASSERT_EQ(a.per_domain.size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    std::uint64_t bytes = 0;
    ASSERT_FALSE(a.per_domain[k].empty());
    for (auto [si, i] : a.per_domain[k]) {
      EXPECT_EQ(c.splits[si].domain, c.train_domains[k]);
      EXPECT_EQ(c.splits[si].split, "train");  // never valid/test, never held out
      bytes += c.splits[si].bytes[i];
    }
    EXPECT_GE(bytes, a.budget);
    EXPECT_LT(bytes - c.splits[a.per_domain[k].back().first].bytes[a.per_domain[k].back().second], a.budget);
  }
  auto same = btm::select_tokenizer_sample(c, 0.006, 1);
  auto other = btm::select_tokenizer_sample(c, 0.006, 2);
  EXPECT_EQ(a.per_domain, same.per_domain);
  EXPECT_NE(a.per_domain, other.per_domain);
}

// ---- audit fixes: each test names the behaviour it pins -----------------------------------

TEST(Corpus, AutoPicksSplitJsonlWhenDomainFoldersHoldSplitFilesDespiteAStrayFile) {
  auto dir = btm::test::fresh_dir("corpus_auto_split");
  write_gz(dir / "a" / "train.jsonl.gz", "{\"text\": \"x\"}\n");
  btm::test::write_text(dir / "a" / "valid.jsonl", "{\"text\": \"y\"}\n");
  btm::test::write_text(dir / "a" / "README.md", "stray");
  EXPECT_EQ(btm::resolve_corpus_format(dir, "auto"), CorpusFormat::split_jsonl);
  // The split_jsonl reader names the stray entry instead of reading JSON lines as text.
  std::string msg = error_of([&] { read_all(dir); });
  EXPECT_NE(msg.find((dir / "a" / "README.md").string() + ": unexpected entry in a split_jsonl corpus"),
            std::string::npos)
      << msg;
  // A plain text tree stays a text tree.
  EXPECT_EQ(btm::resolve_corpus_format(fixtures() / "text_tree", "auto"), CorpusFormat::text_tree);
}

TEST(Corpus, TextTreeRefusesJsonlAndGzipFilesAndSuggestsTheFormat) {
  auto dir = btm::test::fresh_dir("corpus_tree_jsonl");
  btm::test::write_text(dir / "a" / "doc.txt", "plain text");
  btm::test::write_text(dir / "a" / "more" / "rows.jsonl", "{\"text\": \"x\"}\n");
  std::string msg = error_of([&] { read_all(dir, "text_tree"); });
  EXPECT_NE(msg.find((dir / "a" / "more" / "rows.jsonl").string() + ": a JSONL file in a text_tree corpus"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("data.format = \"split_jsonl\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.format = \"jsonl\""), std::string::npos) << msg;

  fs::remove(dir / "a" / "more" / "rows.jsonl");
  write_gz(dir / "a" / "notes.txt.gz", "compressed text");
  msg = error_of([&] { read_all(dir, "text_tree"); });
  EXPECT_NE(msg.find((dir / "a" / "notes.txt.gz").string() + ": a gzip file in a text_tree corpus"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("decompress it"), std::string::npos) << msg;
  // The size fingerprint, taken before the corpus is read, refuses it too.
  msg = error_of([&] { btm::corpus_file_bytes(dir, CorpusFormat::text_tree); });
  EXPECT_NE(msg.find("notes.txt.gz: a gzip file"), std::string::npos) << msg;
}

TEST(Corpus, TruncatedGzipIsReportedAsTruncatedWhereverTheCutLands) {
  auto dir = btm::test::fresh_dir("corpus_trunc_any");
  std::string body;
  for (int i = 0; i < 4000; ++i) body += "{\"text\": \"line " + std::to_string(i * 7919) + " of some text\", \"domain\": \"a\"}\n";
  write_gz(dir / "full.jsonl.gz", body);
  const std::string bytes = btm::test::read_text(dir / "full.jsonl.gz");
  ASSERT_GT(bytes.size(), 1000u);
  const fs::path cut = dir / "c.jsonl.gz";
  // Cuts inside the deflate data (most land mid-line), inside the 8-byte trailer, and at
  // the very end of the compressed data.
  std::vector<std::size_t> sizes = {20, 100, bytes.size() / 3, bytes.size() / 2, bytes.size() - 9,
                                    bytes.size() - 8, bytes.size() - 4, bytes.size() - 1};
  for (std::size_t k = 1; k < 40; ++k) sizes.push_back(30 + k * (bytes.size() - 60) / 40);
  for (std::size_t size : sizes) {
    btm::test::write_text(cut, bytes.substr(0, size));
    std::string msg = error_of([&] { read_all(cut); });
    EXPECT_NE(msg.find(cut.string() + ": truncated or corrupt gzip stream"), std::string::npos)
        << "cut at " << size << " of " << bytes.size() << ": " << msg;
    EXPECT_EQ(msg.find("column"), std::string::npos) << "cut at " << size << " blames the JSON: " << msg;
  }
  // A wrong CRC in the trailer: every line decodes, the stream is still corrupt.
  std::string bad_crc = bytes;
  bad_crc[bytes.size() - 8] ^= 0x55;
  btm::test::write_text(cut, bad_crc);
  std::string msg = error_of([&] { read_all(cut); });
  EXPECT_NE(msg.find(cut.string() + ": truncated or corrupt gzip stream"), std::string::npos) << msg;
  // The complete file still reads.
  EXPECT_EQ(read_all(dir / "full.jsonl.gz").size(), 4000u);
}

TEST(Corpus, DomainNamesFollowTheDeckNameRule) {
  auto dir = btm::test::fresh_dir("corpus_names");
  for (std::string bad : {"a b", "a,b", ".hidden", "caf\xC3\xA9", "tab\\there"}) {
    auto file = dir / "names.jsonl";
    btm::test::write_text(file, "{\"text\": \"ok\", \"domain\": \"good-name_1.2+x\"}\n{\"text\": \"x\", \"domain\": \"" + bad +
                                    "\"}\n");
    std::string msg = error_of([&] { read_all(file); });
    EXPECT_NE(msg.find(file.string() + ":2: bad domain name"), std::string::npos) << bad << " -> " << msg;
    EXPECT_NE(msg.find("letters, digits, '.', '_', '-', '+' (not starting with '.')"), std::string::npos) << msg;
  }
  // A folder name is a domain name too.
  btm::test::write_text(dir / "tree" / "my domain" / "doc.txt", "text");
  std::string msg = error_of([&] { read_all(dir / "tree", "text_tree"); });
  EXPECT_NE(msg.find((dir / "tree" / "my domain").string() + ": bad domain name \"my domain\""), std::string::npos) << msg;
}

TEST(Corpus, Utf8ByteOrderMarkAtTheStartOfAJsonlFileIsSkipped) {
  auto dir = btm::test::fresh_dir("corpus_bom");
  const std::string rows = "{\"text\": \"one\", \"domain\": \"a\"}\n{\"text\": \"two\", \"domain\": \"a\"}\n";
  btm::test::write_text(dir / "c.jsonl", "\xEF\xBB\xBF" + rows);
  auto docs = read_all(dir / "c.jsonl");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "one");
  write_gz(dir / "c.jsonl.gz", "\xEF\xBB\xBF" + rows);
  EXPECT_EQ(read_all(dir / "c.jsonl.gz").size(), 2u);
  btm::test::write_text(dir / "split" / "a" / "train.jsonl", "\xEF\xBB\xBF{\"text\": \"x\"}\n");
  EXPECT_EQ(read_all(dir / "split").size(), 1u);
  // Only at the start of a file: elsewhere it is still a syntax error.
  btm::test::write_text(dir / "mid.jsonl", rows + "\xEF\xBB\xBF{\"text\": \"x\", \"domain\": \"a\"}\n");
  std::string msg = error_of([&] { read_all(dir / "mid.jsonl"); });
  EXPECT_NE(msg.find("mid.jsonl:3: column 1"), std::string::npos) << msg;
}

TEST(Corpus, FallbackIdsDependOnTheTextSoInsertedLinesMoveNoDocument) {
  auto dir = btm::test::fresh_dir("corpus_ids");
  std::string rows;
  for (int i = 0; i < 50; ++i) rows += "{\"text\": \"document " + std::to_string(i) + "\", \"domain\": \"a\"}\n";
  btm::test::write_text(dir / "before.jsonl", rows);
  btm::test::write_text(dir / "after.jsonl", "{\"text\": \"a new first line\", \"domain\": \"a\"}\n" + rows);
  auto before = read_all(dir / "before.jsonl"), after = read_all(dir / "after.jsonl");
  ASSERT_EQ(after.size(), before.size() + 1);
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i + 1].id, before[i].id);
    EXPECT_EQ(btm::hash_split(after[i + 1].id, false, 0.2, 0.2), btm::hash_split(before[i].id, false, 0.2, 0.2));
  }
  EXPECT_EQ(btm::fallback_document_id("a", "document 0"), "a/" + [] {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(btm::fnv1a64("document 0")));
    return std::string(hex);
  }());
}

TEST(Catalog, DuplicateIdsWithinADomainAreCountedNotRefused) {
  auto dir = btm::test::fresh_dir("catalog_dups");
  btm::test::write_text(dir / "c.jsonl",
                        "{\"text\": \"x1\", \"domain\": \"a\", \"id\": \"d1\", \"split\": \"train\"}\n"
                        "{\"text\": \"x2\", \"domain\": \"a\", \"id\": \"d1\", \"split\": \"test\"}\n"
                        "{\"text\": \"x3\", \"domain\": \"a\", \"id\": \"d1\", \"split\": \"train\"}\n"
                        "{\"text\": \"same\", \"domain\": \"a\", \"split\": \"valid\"}\n"
                        "{\"text\": \"same\", \"domain\": \"a\", \"split\": \"valid\"}\n"
                        "{\"text\": \"y\", \"domain\": \"b\", \"id\": \"d1\", \"split\": \"train\"}\n");
  auto c = btm::build_catalog(config(dir / "c.jsonl"));
  EXPECT_EQ(c.counts.at("a").duplicate_ids, 3u);  // d1 twice more, the repeated text once
  EXPECT_EQ(c.counts.at("b").duplicate_ids, 0u);  // ids are per domain
  EXPECT_EQ(c.find("a", "train")->ids.size(), 2u);
}

TEST(Catalog, DomainWithoutUsableDocumentsIsAnErrorWithItsSkipCounts) {
  auto dir = btm::test::fresh_dir("catalog_unusable");
  const fs::path file = dir / "c.jsonl";
  btm::test::write_text(file,
                        "{\"text\": \"fine\", \"domain\": \"a\"}\n"
                        "{\"text\": \"caf\xE9\", \"domain\": \"z\"}\n"
                        "{\"text\": \"\\t\", \"domain\": \"z\"}\n"
                        "{\"text\": \"bad \xFF\", \"domain\": \"z\"}\n");
  // Trained on because data.train_domains is empty: not silently "ignored".
  std::string msg = error_of([&] { btm::build_catalog(config(file)); });
  EXPECT_NE(msg.find("domain 'z' in " + file.string() + " has no usable documents (2 invalid UTF-8, 1 empty)"),
            std::string::npos)
      << msg;
  auto d = config(file);
  d.heldout_domains = {"z"};
  msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.heldout_domains: domain 'z' in " + file.string() +
                     " has no usable documents (2 invalid UTF-8, 1 empty)"),
            std::string::npos)
      << msg;
  // Left out of the run, it is ignored, and its skipped documents are still counted.
  d.heldout_domains = {};
  d.train_domains = {"a"};
  auto c = btm::build_catalog(d);
  EXPECT_EQ(c.ignored_domains, (std::vector<std::string>{"z"}));
  EXPECT_EQ(c.counts.at("z").invalid_utf8, 2u);
  EXPECT_EQ(c.counts.at("z").empty, 1u);
}

TEST(Catalog, EmptyTextTreeFolderIsADomainWithoutUsableDocuments) {
  auto dir = btm::test::fresh_dir("catalog_empty_folder");
  btm::test::write_text(dir / "tree" / "a" / "doc.txt", "some text");
  fs::create_directories(dir / "tree" / "empty");
  auto d = config(dir / "tree");
  d.train_domains = {"a", "empty"};
  std::string msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.train_domains: domain 'empty' in " + (dir / "tree" / "empty").string() +
                     " has no usable documents (0 invalid UTF-8, 0 empty)"),
            std::string::npos)
      << msg;
  d.train_domains = {};
  msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("domain 'empty' in " + (dir / "tree" / "empty").string() + " has no usable documents"),
            std::string::npos)
      << msg;
}

TEST(Catalog, EmptyCorpusSaysItHasNoDocuments) {
  auto dir = btm::test::fresh_dir("catalog_empty");
  btm::test::write_text(dir / "empty.jsonl", "");
  btm::test::write_text(dir / "blank.jsonl", "\n  \n");
  fs::create_directories(dir / "folder");
  fs::create_directories(dir / "hollow" / "a");
  for (const fs::path& p : {dir / "empty.jsonl", dir / "blank.jsonl", dir / "folder", dir / "hollow"}) {
    std::string msg = error_of([&] { btm::build_catalog(config(p)); });
    EXPECT_NE(msg.find(p.string() + " has no documents"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("held out"), std::string::npos) << msg;
  }
}

TEST(Catalog, MissingListedDomainSuggestsTheClosestAndListsTheDomainsFound) {
  auto d = config(fixtures() / "split_jsonl");
  d.train_domains = {"scriptur", "code-go"};
  std::string msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.train_domains: domain \"scriptur\" has no documents in " + d.corpus.string()),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("did you mean 'scripture'?"), std::string::npos) << msg;
  EXPECT_NE(msg.find("domains found: code-go, dictionary, scripture, tech-lexicon"), std::string::npos) << msg;
  d.train_domains = {};
  d.heldout_domains = {"zzz"};
  msg = error_of([&] { btm::build_catalog(d); });
  EXPECT_NE(msg.find("data.heldout_domains: domain \"zzz\" has no documents"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST(Catalog, RequireSplitsNamesDomainSplitCountAndFraction) {
  auto dir = btm::test::fresh_dir("catalog_require");
  // A small hash-split training domain: 3 documents at 5% / 5% give no valid document.
  std::string rows;
  for (int i = 0; i < 40; ++i) rows += "{\"text\": \"big " + std::to_string(i) + "\", \"domain\": \"big\"}\n";
  for (int i = 0; i < 3; ++i) rows += "{\"text\": \"small " + std::to_string(i) + "\", \"domain\": \"small\"}\n";
  btm::test::write_text(dir / "c.jsonl", rows);
  auto d = config(dir / "c.jsonl");
  d.train_domains = {"small"};
  auto c = btm::build_catalog(d);
  ASSERT_TRUE(c.find("small", "train"));
  std::string msg = error_of([&] { btm::require_splits(c, d); });
  EXPECT_NE(msg.find("training domain 'small' in " + d.corpus.string() + " has no valid documents (3 usable documents"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("data.valid_fraction = 0.05"), std::string::npos) << msg;
  EXPECT_NE(msg.find("raise data.valid_fraction / data.test_fraction, add documents, or give explicit splits"),
            std::string::npos)
      << msg;

  // A held-out domain of one document has valid or test, never both.
  d.train_domains = {"big"};
  d.valid_fraction = d.test_fraction = 0.3;
  d.heldout_domains = {"one"};
  btm::test::write_text(dir / "h.jsonl", rows + "{\"text\": \"lonely\", \"domain\": \"one\"}\n");
  d.corpus = dir / "h.jsonl";
  c = btm::build_catalog(d);
  msg = error_of([&] { btm::require_splits(c, d); });
  EXPECT_NE(msg.find("held-out domain 'one' in " + d.corpus.string() + " has no "), std::string::npos) << msg;
  EXPECT_NE(msg.find("(1 usable documents: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("half"), std::string::npos) << msg;

  // Splits the corpus gives: a missing valid file is named as such.
  btm::test::write_text(dir / "split" / "a" / "train.jsonl", "{\"text\": \"x\"}\n");
  btm::test::write_text(dir / "split" / "a" / "test.jsonl", "{\"text\": \"y\"}\n");
  d = config(dir / "split");
  c = btm::build_catalog(d);
  msg = error_of([&] { btm::require_splits(c, d); });
  EXPECT_NE(msg.find("training domain 'a' in " + (dir / "split" / "a").string() +
                     " has no valid documents (2 usable documents: train 1, test 1)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("the corpus gives every document's split"), std::string::npos) << msg;

  // The fixtures and their test decks have every split.
  auto fixture = config(fixtures() / "split_jsonl");
  fixture.heldout_domains = {"tech-lexicon"};
  EXPECT_NO_THROW(btm::require_splits(btm::build_catalog(fixture), fixture));
  auto mixed = config(fixtures() / "mixed.jsonl");
  mixed.heldout_domains = {"dictionary"};
  mixed.valid_fraction = mixed.test_fraction = 0.2;
  EXPECT_NO_THROW(btm::require_splits(btm::build_catalog(mixed), mixed));
  auto tree = config(fixtures() / "text_tree");
  tree.valid_fraction = 0.15;
  tree.test_fraction = 0.45;
  EXPECT_NO_THROW(btm::require_splits(btm::build_catalog(tree), tree));
}
