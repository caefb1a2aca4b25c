#pragma once
// Token ids -> text by table lookup, for btm's tokenizers (byte fallback, identity
// normalisation, no dummy prefix: decoding is the concatenation of the pieces' texts, '▁' as
// a space, byte pieces as their byte, special pieces as nothing). Equal to
// Tokenizer::decode on any ids that decode to valid UTF-8 (every document btm tokenized),
// and far faster: the cluster phase decodes whole corpora.
#include <cstdint>
#include <string>
#include <vector>

#include "btm/data/tokenizer.hpp"

namespace btm::cluster {

class PieceDecoder {
 public:
  explicit PieceDecoder(const Tokenizer& tokenizer);
  // Appends the text of ids[n] to `out`; throws on an id outside the vocabulary.
  void append(const std::uint32_t* ids, std::size_t n, std::string& out) const;
  std::string decode(const std::vector<std::uint32_t>& ids) const;

 private:
  std::vector<std::string> text_;  // [vocabulary] each piece's text
};

}  // namespace btm::cluster
