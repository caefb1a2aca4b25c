// Incremental SentencePiece decoding; the rules are in include/btm/eval/prefix_decoder.hpp.
#include "btm/eval/prefix_decoder.hpp"

#include "btm/error.hpp"

namespace btm {

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr const char* kSpaceSymbol = "\xE2\x96\x81";  // U+2581

bool is_trail(unsigned char c) { return (c & 0xC0) == 0x80; }
bool is_valid_codepoint(std::uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

// Bytes SentencePiece's DecodeUTF8 examines for a character starting with `lead`.
int bytes_examined(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

std::string replace_space_symbol(const std::string& piece) {
  std::string out;
  for (std::size_t i = 0; i < piece.size();) {
    if (piece.compare(i, 3, kSpaceSymbol) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += piece[i++];
    }
  }
  return out;
}

// The byte of a byte-fallback piece "<0xHH>".
int piece_byte(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  return std::stoi(piece.substr(3, 2), nullptr, 16);
}

}  // namespace

int utf8_char_length(const unsigned char* s, std::size_t n) {
  // sentencepiece/src/util.cc, DecodeUTF8, with IsValidDecodeUTF8's acceptance.
  const unsigned char b0 = s[0];
  if (b0 < 0x80) return 1;
  if (n >= 2 && (b0 & 0xE0) == 0xC0) {
    const std::uint32_t cp = (std::uint32_t(b0 & 0x1F) << 6) | (s[1] & 0x3F);
    return is_trail(s[1]) && cp >= 0x80 && is_valid_codepoint(cp) ? 2 : 0;
  }
  if (n >= 3 && (b0 & 0xF0) == 0xE0) {
    const std::uint32_t cp = (std::uint32_t(b0 & 0x0F) << 12) | (std::uint32_t(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return is_trail(s[1]) && is_trail(s[2]) && cp >= 0x800 && is_valid_codepoint(cp) ? 3 : 0;
  }
  if (n >= 4 && (b0 & 0xF8) == 0xF0) {
    const std::uint32_t cp = (std::uint32_t(b0 & 0x07) << 18) | (std::uint32_t(s[1] & 0x3F) << 12) |
                             (std::uint32_t(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && cp >= 0x10000 && is_valid_codepoint(cp) ? 4 : 0;
  }
  return 0;
}

PrefixDecoder::PrefixDecoder(const Tokenizer& tokenizer) {
  const int n = tokenizer.vocab_size();
  surface_.resize(n);
  byte_.assign(n, -1);
  for (int id = 0; id < n; ++id) {
    if (tokenizer.is_byte(id)) {
      byte_[id] = piece_byte(tokenizer.piece(id));
      if (byte_[id] < 0) throw Error("tokenizer: byte piece " + std::to_string(id) + " is not of the form <0xHH>");
    } else if (tokenizer.is_control(id)) {
      surface_[id].clear();
    } else if (tokenizer.is_unknown(id)) {
      surface_[id] = tokenizer.decode({id});  // the model's unknown surface
    } else {
      surface_[id] = replace_space_symbol(tokenizer.piece(id));
    }
  }
}

void PrefixDecoder::reset() {
  stable_.clear();
  tail_.clear();
  pending_.clear();
}

void PrefixDecoder::push(int id) {
  if (id < 0 || id >= static_cast<int>(byte_.size())) {
    throw Error("tokenizer: id " + std::to_string(id) + " is outside the vocabulary [0, " +
                std::to_string(byte_.size()) + ")");
  }
  if (byte_[id] >= 0) {
    pending_ += static_cast<char>(byte_[id]);
    settle(false);
  } else {
    settle(true);  // a non-byte piece ends the byte run
    stable_ += surface_[id];
  }
}

void PrefixDecoder::settle(bool end_of_run) {
  // A decision at the front depends only on the bytes DecodeUTF8 examines there: final once
  // they are all present, or once the run has ended.
  auto front = [](const std::string& s, std::size_t at, std::string& out) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + at;
    const int len = utf8_char_length(p, s.size() - at);
    if (len > 0) out.append(s, at, len);
    else out += kReplacement;
    return len > 0 ? std::size_t(len) : std::size_t(1);
  };
  std::size_t at = 0;
  while (at < pending_.size()) {
    const auto lead = static_cast<unsigned char>(pending_[at]);
    if (!end_of_run && pending_.size() - at < std::size_t(bytes_examined(lead))) break;
    at += front(pending_, at, stable_);
  }
  pending_.erase(0, at);
  tail_.clear();
  for (std::size_t i = 0; i < pending_.size();) i += front(pending_, i, tail_);
}

}  // namespace btm
