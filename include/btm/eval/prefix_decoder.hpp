#pragma once
// Incremental SentencePiece decoding, one token at a time, for C-BTM routing: after every
// push, stable() + tail() is exactly Tokenizer::decode of every id pushed since the last
// reset, computed in O(1) amortised per token instead of re-decoding the prefix.
//
// SentencePiece's decode (sentencepiece_processor.cc, Decode of pieces) renders a normal or
// user-defined piece as its text with U+2581 replaced by a space, a control piece (bos, eos,
// pad) as nothing, the unknown piece as its unknown surface, and each maximal run of
// byte-fallback pieces <0xHH> as its bytes read as UTF-8: a valid character (by its
// DecodeUTF8: no overlong forms, no surrogates, at most U+10FFFF) is kept, every byte that
// does not start one becomes U+FFFD. Decoding a prefix is therefore not append-only: the
// bytes of a character not yet complete decode as U+FFFD each, and become the character
// once its last byte arrives. This decoder keeps such bytes pending and reports them in
// tail(); everything in stable() is final.
//
// Not reproduced: tokenizers with a dummy prefix or extra-whitespace removal strip the
// first piece's leading U+2581 in decode; this decoder keeps it as a space. Tokenizers that
// btm trains have neither, and a leading space never changes the terms of a text.
#include <cstdint>
#include <string>
#include <vector>

#include "btm/data/tokenizer.hpp"

namespace btm {

// SentencePiece's DecodeUTF8 on s[0, n): the length of the character at s[0] when it is
// valid, else 0 (the byte decodes as U+FFFD). n >= 1.
int utf8_char_length(const unsigned char* s, std::size_t n);

class PrefixDecoder {
 public:
  explicit PrefixDecoder(const Tokenizer& tokenizer);

  void reset();
  void push(int id);  // throws for an id outside the vocabulary

  // Text that no later token changes; it only grows between resets.
  const std::string& stable() const { return stable_; }
  // The decode of the pending bytes (an incomplete UTF-8 character at the end): at most a
  // few characters, replaced by the next push.
  const std::string& tail() const { return tail_; }
  std::string text() const { return stable_ + tail_; }

 private:
  void settle(bool end_of_run);  // moves decided bytes of pending_ into stable_

  std::vector<std::string> surface_;  // per id: the text of a non-byte piece
  std::vector<int> byte_;             // per id: the byte of a byte piece, else -1
  std::string stable_, tail_;
  std::string pending_;  // bytes of the current byte run not yet decided
};

}  // namespace btm
