#pragma once
// SentencePiece BPE tokenizer. Models that btm trains round-trip any UTF-8 text exactly
// (decode(encode(t)) == t), code and whitespace included: byte fallback, identity
// normalisation, whitespace kept as is (no extra-whitespace removal, no dummy prefix),
// whitespace-only pieces allowed (indentation), digits split. The one exception is the
// character U+2581 '▁', which SentencePiece uses for the space and decodes as one.
// Special ids: unk = 0, bos = 1, eos = 2, pad = 3 (unk never appears: bytes fall back).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace btm {

inline constexpr int kUnkId = 0;
inline constexpr int kBosId = 1;
inline constexpr int kEosId = 2;
inline constexpr int kPadId = 3;

class Tokenizer {
 public:
  // From the bytes of a serialized SentencePiece model (as stored in data.h5).
  explicit Tokenizer(std::string model_bytes);
  // Reads a .model file; throws naming the path when it is missing or not a model.
  static Tokenizer from_file(const std::filesystem::path& path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Trains a BPE model (the settings above) on `lines`: SentencePiece trains on lines, so
  // pass documents split at '\n'; lines longer than 64 KiB are ignored by the trainer.
  // Returns the serialized model. Deterministic for the same lines. Throws with the
  // trainer's message when training fails (e.g. a vocabulary too large for the sample).
  static std::string train(const std::vector<std::string_view>& lines, int vocab_size);

  std::vector<std::int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<std::int32_t>& ids) const;
  std::string piece(int id) const;  // the piece text, for display
  // Piece kinds, as SentencePiece's decode treats them: control pieces (bos, eos, pad)
  // decode to nothing, byte-fallback pieces <0xHH> to one byte each.
  bool is_control(int id) const;
  bool is_byte(int id) const;
  bool is_unknown(int id) const;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;
  const std::string& model_bytes() const { return model_bytes_; }

 private:
  std::string model_bytes_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace btm
