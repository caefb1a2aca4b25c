#include "btm/data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "btm/error.hpp"

namespace btm {

namespace {

// Feeds the trainer from memory: no temporary files.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string_view>& lines) : lines_(lines) { load(); }
  bool done() const override { return index_ >= lines_.size(); }
  void Next() override {
    ++index_;
    load();
  }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() {
    if (index_ < lines_.size()) current_.assign(lines_[index_]);
  }
  const std::vector<std::string_view>& lines_;
  std::size_t index_ = 0;
  std::string current_;
};

}  // namespace

Tokenizer::Tokenizer(std::string model_bytes)
    : model_bytes_(std::move(model_bytes)), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  auto status = sp_->LoadFromSerializedProto(model_bytes_);
  if (!status.ok()) throw Error("not a SentencePiece model: " + status.ToString());
}

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  const std::string expected = "expected a SentencePiece .model file, e.g. one written by sentencepiece's spm_train "
                               "or the /tokenizer/model bytes of a data.h5";
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw Error("data.tokenizer: " + path.string() + " not found (" + expected + ")");
  }
  if (std::filesystem::is_directory(status)) {
    throw Error("data.tokenizer: " + path.string() + " is not a SentencePiece model (it is a folder; " + expected + ")");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("data.tokenizer: cannot open " + path.string() + " (" + expected + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("data.tokenizer: cannot read " + path.string());
  std::string bytes = ss.str();
  if (bytes.empty()) {
    throw Error("data.tokenizer: " + path.string() + " is not a SentencePiece model (the file is empty; " + expected + ")");
  }
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer = std::make_unique<Tokenizer>(std::move(bytes));
  } catch (const Error& e) {
    throw Error("data.tokenizer: " + path.string() + " is not a SentencePiece model (" + e.what() + "; " + expected + ")");
  }
  if (tokenizer->vocab_size() <= 0) {
    throw Error("data.tokenizer: " + path.string() + " is not a SentencePiece model (it has no pieces; " + expected + ")");
  }
  return std::move(*tokenizer);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::string Tokenizer::train(const std::vector<std::string_view>& lines, int vocab_size) {
  if (lines.empty()) throw Error("tokenizer training: the sample is empty (no training text)");
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"character_coverage", "0.9995"},
      {"max_sentence_length", "65536"},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"pad_id", std::to_string(kPadId)},
      // A fixed thread count: the model records it, and data.h5 must not depend on the machine.
      {"num_threads", "2"},
      {"minloglevel", "2"},  // SentencePiece logs every step otherwise
  };
  LineIterator it(lines);
  std::string model;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!status.ok()) {
    const std::string what = status.ToString();
    std::string hint = " (the vocabulary holds 4 special pieces, 256 byte pieces and every character of the sample";
    hint += what.find("required_chars") != std::string::npos ? ": raise data.vocab_size)"
                                                             : "; a vocabulary larger than the sample supports fails too: lower data.vocab_size or raise data.tokenizer_sample_mb)";
    throw Error("tokenizer training failed (data.vocab_size = " + std::to_string(vocab_size) + "): " + what + hint);
  }
  return model;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw Error("tokenizer: encode failed: " + status.ToString());
  return std::vector<std::int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  const int n = sp_->GetPieceSize();
  for (int id : v) {
    if (id < 0 || id >= n) throw Error("tokenizer: id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(n) + ")");
  }
  std::string out;
  auto status = sp_->Decode(v, &out);
  if (!status.ok()) throw Error("tokenizer: decode failed: " + status.ToString());
  return out;
}

std::string Tokenizer::piece(int id) const {
  if (id < 0 || id >= sp_->GetPieceSize()) return "";
  return sp_->IdToPiece(id);
}

bool Tokenizer::is_control(int id) const { return sp_->IsControl(id); }
bool Tokenizer::is_byte(int id) const { return sp_->IsByte(id); }
bool Tokenizer::is_unknown(int id) const { return sp_->IsUnknown(id); }

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::unk_id() const { return sp_->unk_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }

}  // namespace btm
