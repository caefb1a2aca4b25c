#include "btm/cluster/piece_decoder.hpp"

#include "btm/error.hpp"

namespace btm::cluster {

namespace {

// "<0xHH>" -> the byte, else -1.
int byte_piece(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

PieceDecoder::PieceDecoder(const Tokenizer& tokenizer) : text_(tokenizer.vocab_size()) {
  for (int id = 0; id < tokenizer.vocab_size(); ++id) {
    const int byte = byte_piece(tokenizer.piece(id));
    // A single piece decodes on its own like in context, except bytes of a multi-byte
    // character, which SentencePiece replaces when alone.
    text_[id] = byte >= 0 ? std::string(1, static_cast<char>(byte)) : tokenizer.decode({id});
  }
}

void PieceDecoder::append(const std::uint32_t* ids, std::size_t n, std::string& out) const {
  for (std::size_t i = 0; i < n; ++i) {
    if (ids[i] >= text_.size()) {
      throw Error("tokenizer: id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                  std::to_string(text_.size()) + ")");
    }
    out += text_[ids[i]];
  }
}

std::string PieceDecoder::decode(const std::vector<std::uint32_t>& ids) const {
  std::string out;
  append(ids.data(), ids.size(), out);
  return out;
}

}  // namespace btm::cluster
