#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "btm/data/corpus.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "support/test_paths.hpp"

namespace {

// Every document of the split_jsonl fixture (code with tabs, dictionary text with accents,
// scripture, the held-out lexicon).
std::vector<std::string> fixture_texts() {
  std::vector<std::string> texts;
  auto corpus = btm::test::test_data_dir() / "fixtures" / "split_jsonl";
  btm::for_each_document(corpus, btm::CorpusFormat::split_jsonl, [&](btm::RawDocument& d) { texts.push_back(d.text); });
  return texts;
}

std::vector<std::string_view> lines_of(const std::vector<std::string>& texts, std::size_t every = 1) {
  std::vector<std::string_view> lines;
  for (std::size_t t = 0; t < texts.size(); t += every) {
    std::string_view s = texts[t];
    std::size_t pos = 0;
    while (pos < s.size()) {
      auto end = s.find('\n', pos);
      if (end == std::string_view::npos) end = s.size();
      if (end > pos) lines.push_back(s.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  return lines;
}

const btm::Tokenizer& small_tokenizer() {
  static const btm::Tokenizer tok(btm::Tokenizer::train(lines_of(fixture_texts()), 512));
  return tok;
}

}  // namespace

TEST(Tokenizer, TrainsABpeModelWithTheDocumentedSpecialIds) {
  const auto& tok = small_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.unk_id(), btm::kUnkId);
  EXPECT_EQ(tok.bos_id(), btm::kBosId);
  EXPECT_EQ(tok.eos_id(), btm::kEosId);
  EXPECT_EQ(tok.pad_id(), btm::kPadId);
  EXPECT_EQ(tok.piece(tok.eos_id()), "</s>");
  EXPECT_EQ(tok.piece(4), "<0x00>");  // byte fallback pieces follow the specials
  btm::Tokenizer copy(tok.model_bytes());
  EXPECT_EQ(copy.encode("In the beginning"), tok.encode("In the beginning"));
}

TEST(Tokenizer, RoundTripsRealMultiDomainTextIncludingCodeAndUnicode) {
  const auto& tok = small_tokenizer();
  int checked = 0;
  for (const auto& text : fixture_texts()) {
    auto ids = tok.encode(text);
    ASSERT_EQ(tok.decode(ids), text);
    for (int id : ids) EXPECT_NE(id, tok.unk_id());
    ++checked;
  }
  EXPECT_EQ(checked, 68);
  const std::vector<std::string> tricky = {
      "",
      "\n",
      " leading space",
      "trailing spaces   ",
      "\tfunc main() {\n\t\tfmt.Println(\"héllo\")\n\t}\r\n",
      "    four spaces\n        eight\n",
      "mixed\u00a0nbsp and emoji \xF0\x9F\x98\x80 and CJK \xE6\x97\xA5\xE6\x9C\xAC",
      "digits 1234567890 and 3.14159",
      "control \x01\x02 bytes\x7f",
      "x  y   z\n\n\n",
  };
  for (const auto& t : tricky) EXPECT_EQ(tok.decode(tok.encode(t)), t) << t;
}

TEST(Tokenizer, DigitsAreSplitAndWhitespaceRunsArePieces) {
  const auto& tok = small_tokenizer();
  auto ids = tok.encode("2024");
  EXPECT_EQ(ids.size(), 4u);  // split_digits
  // Indentation in the Go fixture is tabs; a run of spaces still round-trips in few pieces.
  EXPECT_LE(tok.encode("        ").size(), 8u);
}

TEST(Tokenizer, TrainingIsDeterministic) {
  auto texts = fixture_texts();
  auto lines = lines_of(texts, 2);
  EXPECT_EQ(btm::Tokenizer::train(lines, 480), btm::Tokenizer::train(lines, 480));
}

TEST(Tokenizer, BadModelsAndImpossibleVocabulariesAreClearErrors) {
  EXPECT_THROW(btm::Tokenizer("not a model"), btm::Error);
  try {
    btm::Tokenizer::from_file("/no/such/tokenizer.model");
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/tokenizer.model"), std::string::npos);
  }
  std::vector<std::string_view> tiny = {"ab", "ba"};
  try {
    btm::Tokenizer::train(tiny, 100000);
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("lower data.vocab_size"), std::string::npos) << e.what();
  }
  EXPECT_THROW(btm::Tokenizer::train({}, 300), btm::Error);
  EXPECT_THROW(small_tokenizer().decode({0, 512}), btm::Error);
}

TEST(Tokenizer, FromFileSaysAFolderOrAnotherFileIsNotASentencePieceModel) {
  auto dir = btm::test::fresh_dir("tokenizer_not_model");
  auto message = [](const std::filesystem::path& p) {
    try {
      btm::Tokenizer::from_file(p);
    } catch (const btm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  btm::test::write_text(dir / "notes.txt", "this is a text file, not a model\n");
  btm::test::write_text(dir / "empty.model", "");
  btm::test::write_text(dir / "ok.model", small_tokenizer().model_bytes());
  for (const auto& p : {dir, dir / "notes.txt", dir / "empty.model"}) {
    const std::string msg = message(p);
    EXPECT_EQ(msg.rfind("data.tokenizer: " + p.string() + " is not a SentencePiece model (", 0), 0u) << msg;
  }
  EXPECT_NE(message(dir).find("it is a folder"), std::string::npos);
  EXPECT_NE(message(dir / "missing.model").find("data.tokenizer: " + (dir / "missing.model").string() + " not found"),
            std::string::npos);
  EXPECT_EQ(message(dir / "ok.model"), "");
  EXPECT_EQ(btm::Tokenizer::from_file(dir / "ok.model").vocab_size(), 512);
}
