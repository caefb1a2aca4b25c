#include <gtest/gtest.h>

#include <map>

#include "btm/comm.hpp"
#include "btm/data/corpus.hpp"
#include "btm/data/dataset.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/phases.hpp"
#include "data_helpers.hpp"
#include "support/error_of.hpp"
#include "support/test_paths.hpp"

namespace fs = std::filesystem;
using btm::h5::File;

using btm::test::error_of;

namespace {

// The HDF5 type of a dataset equals `expected` (e.g. H5T_STD_U16LE).
bool has_type(const File& f, const std::string& path, hid_t expected) {
  btm::h5::Handle d(H5Dopen2(f.id(), path.c_str(), H5P_DEFAULT));
  btm::h5::Handle t(H5Dget_type(d.get()));
  return H5Tequal(t.get(), expected) > 0;
}

// Every document of a corpus by (domain, id).
std::map<std::pair<std::string, std::string>, std::string> corpus_texts(const fs::path& corpus) {
  std::map<std::pair<std::string, std::string>, std::string> out;
  btm::for_each_document(corpus, btm::resolve_corpus_format(corpus, "auto"),
                         [&](btm::RawDocument& d) { out[{d.domain, d.id}] = d.text; });
  return out;
}

// All content of a data file (every dataset's values, not the file's bytes), as one string.
std::string content(const fs::path& path) {
  File f(path, File::Mode::read);
  std::string out;
  auto model = f.read<std::uint8_t>("/tokenizer/model");
  out += std::string(model.begin(), model.end()) + "|";
  for (const auto& domain : f.list("/domains")) {
    for (const auto& split : f.list("/domains/" + domain)) {
      const std::string g = "/domains/" + domain + "/" + split;
      out += g + "|";
      for (auto t : f.read<std::uint16_t>(g + "/tokens")) out += std::to_string(t) + ",";
      for (auto o : f.read<std::uint64_t>(g + "/doc_offsets")) out += std::to_string(o) + ",";
      for (const auto& id : f.read_strings(g + "/doc_ids")) out += id + ",";
    }
  }
  for (const char* a : {"train", "heldout"}) out += f.string_attr("/domains", a) + "|";
  return out;
}

}  // namespace

TEST(Prepare, WritesTheDesignLayoutWithEosAfterEveryDocument) {
  btm::Comm world = btm::Comm::world();
  auto deck = btm::test::fixture_deck(btm::test::fresh_dir("prepare_layout"));
  btm::run_prepare(deck, world);

  File f(deck.data_file(), File::Mode::read);
  ASSERT_TRUE(f.exists("/tokenizer/model"));
  EXPECT_TRUE(has_type(f, "/tokenizer/model", H5T_STD_U8LE));
  EXPECT_EQ(f.attr<std::int64_t>("/tokenizer/model", "vocab_size"), 512);
  EXPECT_EQ(f.attr<std::int64_t>("/tokenizer/model", "bos_id"), btm::kBosId);
  EXPECT_EQ(f.attr<std::int64_t>("/tokenizer/model", "eos_id"), btm::kEosId);
  EXPECT_EQ(f.string_attr("/domains", "train"), "code-go,dictionary,scripture");
  EXPECT_EQ(f.string_attr("/domains", "heldout"), "tech-lexicon");
  EXPECT_EQ(f.attr<std::uint64_t>("/domains", "skipped_invalid_utf8"), 0u);
  EXPECT_EQ(f.string_attr("/meta", "phase"), "prepare");
  EXPECT_EQ(f.string_attr("/meta", "version"), BTM_VERSION);
  EXPECT_FALSE(f.string_attr("/meta", "deck").empty());
  EXPECT_EQ(f.list("/domains"), (std::vector<std::string>{"code-go", "dictionary", "scripture", "tech-lexicon"}));
  EXPECT_EQ(f.list("/domains/scripture"), (std::vector<std::string>{"test", "train", "valid"}));
  EXPECT_EQ(f.list("/domains/tech-lexicon"), (std::vector<std::string>{"test", "valid"}));
  EXPECT_EQ(f.string_attr("/domains/tech-lexicon", "role"), "heldout");

  btm::Tokenizer tok(btm::Dataset(deck.data_file()).tokenizer_model());
  auto texts = corpus_texts(deck.data.corpus);
  std::size_t docs = 0;
  for (const auto& domain : f.list("/domains")) {
    for (const auto& split : f.list("/domains/" + domain)) {
      const std::string g = "/domains/" + domain + "/" + split;
      EXPECT_EQ(f.list(g), (std::vector<std::string>{"doc_ids", "doc_offsets", "tokens"}));
      EXPECT_TRUE(has_type(f, g + "/tokens", H5T_STD_U16LE)) << g;
      EXPECT_TRUE(has_type(f, g + "/doc_offsets", H5T_STD_U64LE)) << g;
      auto tokens = f.read<std::uint16_t>(g + "/tokens");
      auto offsets = f.read<std::uint64_t>(g + "/doc_offsets");
      auto ids = f.read_strings(g + "/doc_ids");
      ASSERT_EQ(offsets.size(), ids.size() + 1) << g;
      EXPECT_EQ(offsets.front(), 0u);
      EXPECT_EQ(offsets.back(), tokens.size());
      for (std::size_t i = 0; i < ids.size(); ++i) {
        ASSERT_LT(offsets[i], offsets[i + 1]);
        EXPECT_EQ(tokens[offsets[i + 1] - 1], btm::kEosId) << g << " doc " << i;
        std::vector<std::int32_t> doc(tokens.begin() + offsets[i], tokens.begin() + offsets[i + 1] - 1);
        for (int t : doc) ASSERT_NE(t, btm::kEosId);
        ASSERT_TRUE(texts.count({domain, ids[i]})) << ids[i];
        EXPECT_EQ(tok.decode(doc), texts.at({domain, ids[i]})) << ids[i];
        ++docs;
      }
    }
  }
  EXPECT_EQ(docs, 68u);
}

TEST(Prepare, ContentIsIdenticalForAnyRankCount) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_ranks");
  auto deck = btm::test::fixture_deck(dir / "all");
  deck.data.corpus = btm::test::test_data_dir() / "fixtures" / "mixed.jsonl";
  deck.data.heldout_domains = {"dictionary"};
  deck.data.valid_fraction = 0.2;
  deck.data.test_fraction = 0.2;
  btm::run_prepare(deck, world);
  // The same deck on rank 0 alone.
  auto alone = deck;
  alone.run.out_dir = dir / "alone";
  if (world.is_root()) btm::run_prepare(alone, btm::Comm(MPI_COMM_SELF));
  world.barrier();
  if (world.is_root()) {
    std::string a = content(deck.data_file()), b = content(alone.data_file());
    EXPECT_GT(a.size(), 1000u);
    EXPECT_EQ(a, b);
    File f(deck.data_file(), File::Mode::read);
    EXPECT_FALSE(f.exists("/domains/dictionary/train"));  // held out: valid and test only
    EXPECT_TRUE(f.exists("/domains/dictionary/valid/tokens"));
  }
}

TEST(Prepare, SkipsWhenUpToDateAndRefusesOtherDataSettings) {
  btm::Comm world = btm::Comm::world();
  auto deck = btm::test::fixture_deck(btm::test::fresh_dir("prepare_rerun"), "text_tree");
  btm::run_prepare(deck, world);
  auto stamp = fs::last_write_time(deck.data_file());
  world.barrier();
  btm::run_prepare(deck, world);  // up to date: not rewritten
  EXPECT_EQ(fs::last_write_time(deck.data_file()), stamp);

  auto changed = deck;
  changed.data.vocab_size = 600;
  changed.data.heldout_domains = {"dictionary"};
  std::string msg = error_of([&] { btm::run_prepare(changed, world); });
  EXPECT_NE(msg.find("was built from different data settings"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.vocab_size: the file has 512, the deck has 600"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.heldout_domains"), std::string::npos) << msg;
  EXPECT_NE(msg.find("delete " + deck.data_file().string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.out_dir"), std::string::npos) << msg;
  EXPECT_EQ(fs::last_write_time(deck.data_file()), stamp);
  world.barrier();

  // A corpus that changed size is noticed; a corpus that is gone leaves data.h5 in use.
  auto copy = btm::test::fixture_deck(btm::test::fresh_dir("prepare_moved"), "text_tree");
  copy.data.corpus = copy.run.out_dir / "corpus";
  if (world.is_root()) fs::copy(deck.data.corpus, copy.data.corpus, fs::copy_options::recursive);
  world.barrier();
  btm::run_prepare(copy, world);
  if (world.is_root()) btm::test::write_text(copy.data.corpus / "scripture" / "extra.txt", "more text");
  world.barrier();
  msg = error_of([&] { btm::run_prepare(copy, world); });
  EXPECT_NE(msg.find("corpus size (bytes): the file has"), std::string::npos) << msg;
  world.barrier();
  if (world.is_root()) fs::remove_all(copy.data.corpus);
  world.barrier();
  auto kept = fs::last_write_time(copy.data_file());
  EXPECT_NO_THROW(btm::run_prepare(copy, world));
  EXPECT_EQ(fs::last_write_time(copy.data_file()), kept);
  world.barrier();

  // A file that is not a data file is not overwritten either.
  auto foreign = btm::test::fixture_deck(btm::test::fresh_dir("prepare_foreign"), "text_tree");
  if (world.is_root()) {
    File f(foreign.data_file(), File::Mode::create);
    f.write<float>("/x", std::vector<float>{1});
  }
  world.barrier();
  msg = error_of([&] { btm::run_prepare(foreign, world); });
  EXPECT_NE(msg.find("is not a data file written by btm's prepare phase"), std::string::npos) << msg;
}

TEST(Prepare, LoadsAnExistingTokenizerModel) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_tokenizer");
  auto first = btm::test::fixture_deck(dir / "first");
  btm::run_prepare(first, world);
  auto model = btm::Dataset(first.data_file()).tokenizer_model();
  if (world.is_root()) btm::test::write_text(dir / "tok.model", model);
  world.barrier();

  auto deck = btm::test::fixture_deck(dir / "second", "text_tree");
  deck.data.tokenizer = dir / "tok.model";
  deck.data.vocab_size = 8192;  // ignored: the model decides
  btm::run_prepare(deck, world);
  btm::Dataset data(deck.data_file());
  EXPECT_EQ(data.tokenizer_model(), model);
  EXPECT_EQ(data.vocab_size(), 512);
  EXPECT_EQ(data.domains(), (std::vector<std::string>{"code-go", "dictionary", "scripture"}));
  std::uint64_t docs = 0;
  for (const auto& d : data.domains()) {
    for (const char* s : {"train", "valid", "test"}) docs += data.has(d, s) ? data.num_docs(d, s) : 0;
  }
  EXPECT_EQ(docs, 12u);

  deck.run.out_dir = dir / "third";
  deck.data.tokenizer = dir / "missing.model";
  std::string msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("missing.model"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(deck.data_file()));
}

TEST(Prepare, BadCorporaFailOnEveryRankWithoutLeavingAFile) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_bad");
  auto deck = btm::test::fixture_deck(dir / "out");
  deck.data.corpus = dir / "nowhere.jsonl";
  std::string msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("corpus not found: " + deck.data.corpus.string()), std::string::npos) << msg;

  deck.data.corpus = btm::test::test_data_dir() / "fixtures" / "split_jsonl";
  deck.data.train_domains = {"scripture", "legal"};
  msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("\"legal\" has no documents"), std::string::npos) << msg;
  EXPECT_NE(msg.find("domains found: code-go, dictionary, scripture, tech-lexicon"), std::string::npos) << msg;

  if (world.is_root()) btm::test::write_text(dir / "bad.jsonl", "{\"text\": \"ok\", \"domain\": \"a\"}\n{\"text\": \"x\"\n");
  world.barrier();
  deck.data.corpus = dir / "bad.jsonl";
  deck.data.train_domains = {};
  msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("bad.jsonl:2: column"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(deck.data_file()));
  if (world.is_root()) {
    for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
  }
}

// ---- audit fixes ----------------------------------------------------------------------

TEST(Prepare, RanksThatCannotSeeTheCorpusStopEveryRankNamingThem) {
  btm::Comm world = btm::Comm::world();
  if (world.size() < 2) GTEST_SKIP() << "needs 2 ranks or more";
  auto dir = btm::test::fresh_dir("prepare_blind");
  auto deck = btm::test::fixture_deck(dir / "out");
  // Rank 1 looks for the corpus where it is not (a node without the shared file system).
  if (world.rank() == 1) deck.data.corpus = dir / "not-mounted" / "split_jsonl";
  const std::string msg = error_of([&] { btm::run_prepare(deck, world); });  // must not hang
  EXPECT_NE(msg.find("is not visible on rank 1 of " + std::to_string(world.size())), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.corpus: "), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(deck.data_file()));
  // Several blind ranks are all named.
  if (world.size() >= 4) {
    auto many = btm::test::fixture_deck(dir / "out2");
    if (world.rank() == 1 || world.rank() == 3) many.data.corpus = dir / "not-mounted";
    const std::string m = error_of([&] { btm::run_prepare(many, world); });
    EXPECT_NE(m.find("is not visible on ranks 1, 3 of 4"), std::string::npos) << m;
  }
}

TEST(Prepare, FailsBeforeTokenizingWhenADomainHasNoValidOrTestDocuments) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_splits");
  auto deck = btm::test::fixture_deck(dir / "out", "text_tree");
  deck.data.valid_fraction = 0.05;  // 4 documents per domain: no valid or test document
  deck.data.test_fraction = 0.05;
  deck.data.tokenizer_sample_mb = 1000;  // would take long to tokenize if it got that far
  const std::string msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("training domain 'dictionary' in " + (deck.data.corpus / "dictionary").string() +
                     " has no valid documents (4 usable documents: train 4)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("data.valid_fraction = 0.05"), std::string::npos) << msg;
  EXPECT_NE(msg.find("raise data.valid_fraction / data.test_fraction"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("re-run prepare"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(deck.data_file()));
}

TEST(Prepare, GivenTokenizerThatIsNotAModelFailsFirst) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_bad_tokenizer");
  auto deck = btm::test::fixture_deck(dir / "out");
  deck.data.tokenizer = dir;  // a folder
  std::string msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("data.tokenizer: " + dir.string() + " is not a SentencePiece model (it is a folder"),
            std::string::npos)
      << msg;
  deck.data.tokenizer = deck.data.corpus / "scripture" / "train.jsonl.gz";
  msg = error_of([&] { btm::run_prepare(deck, world); });
  EXPECT_NE(msg.find("data.tokenizer: " + deck.data.tokenizer.string() + " is not a SentencePiece model ("),
            std::string::npos)
      << msg;
  EXPECT_FALSE(fs::exists(deck.data_file()));
}

TEST(Prepare, LogLineReportsDuplicateIds) {
  btm::Comm world = btm::Comm::world();
  auto dir = btm::test::fresh_dir("prepare_dups");
  if (world.is_root()) {
    std::string rows;
    for (const char* d : {"a", "b"}) {
      for (int i = 0; i < 12; ++i) {
        const std::string split = i < 8 ? "train" : i < 10 ? "valid" : "test";
        rows += std::string("{\"text\": \"text ") + d + " " + std::to_string(i) + " with words\", \"domain\": \"" + d +
                "\", \"split\": \"" + split + "\", \"id\": \"" + (i % 4 == 0 ? std::string("same") : std::to_string(i)) +
                "\"}\n";
      }
    }
    btm::test::write_text(dir / "c.jsonl", rows);
  }
  world.barrier();
  auto deck = btm::test::fixture_deck(dir / "out");
  deck.data.corpus = dir / "c.jsonl";
  deck.data.heldout_domains = {};
  deck.data.vocab_size = 300;
  testing::internal::CaptureStdout();
  btm::run_prepare(deck, world);
  const std::string out = testing::internal::GetCapturedStdout();
  if (world.is_root()) EXPECT_NE(out.find(" duplicate_ids=4 "), std::string::npos) << out;  // "same" twice more per domain
  EXPECT_TRUE(fs::exists(deck.data_file()));
}
