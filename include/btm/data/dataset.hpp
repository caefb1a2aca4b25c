#pragma once
// Read access to data.h5 (ARCHITECTURE, Files): the tokenizer and, per domain and split, a token
// stream with documents separated by EOS. A "block" is context+1 consecutive tokens
// starting at block*context: inputs are its first `context` tokens, targets its last.
//
// data.h5, as the prepare phase writes it (src/data/prepare.cpp):
//   /tokenizer/model              uint8 [bytes]  serialized SentencePiece model
//       attrs vocab_size, bos_id, eos_id, unk_id, pad_id (int64), source ("trained" or the path)
//   /domains                      attrs train, heldout: comma-separated domain names (in deck
//                                 order); skipped_invalid_utf8, skipped_empty (uint64 totals)
//   /domains/<domain>             attrs role ("train" | "heldout"), documents (seen in the
//                                 corpus), skipped_invalid_utf8, skipped_empty, dropped_over_cap
//   /domains/<domain>/<split>     split = train | valid | test; only splits with documents;
//                                 held-out domains have valid/test only (unless the corpus says
//                                 otherwise). attr text_bytes (uint64: UTF-8 bytes of the text)
//       tokens       uint16 [T] (uint32 when vocab_size > 65536): each document's tokens
//                    followed by one EOS, documents in corpus order
//       doc_offsets  uint64 [n+1]: document i is tokens[doc_offsets[i], doc_offsets[i+1]),
//                    its EOS included; doc_offsets[0] = 0, doc_offsets[n] = T
//       doc_ids      string [n] (variable-length UTF-8): the corpus ids
//   /meta                         attrs deck (resolved deck, TOML), version, phase = "prepare",
//                                 data_settings (the settings compared on a re-run)
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "btm/h5.hpp"

namespace btm {

class Dataset {
 public:
  // Opens read-only on the calling rank (no collective). Throws with the path when the
  // file is missing or is not a btm data file.
  explicit Dataset(const std::filesystem::path& data_h5);

  const std::filesystem::path& path() const { return path_; }
  int vocab_size() const { return vocab_size_; }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  std::string tokenizer_model() const;  // SentencePiece model bytes

  std::vector<std::string> domains() const;  // sorted
  bool has(const std::string& domain, const std::string& split) const;
  std::uint64_t num_tokens(const std::string& domain, const std::string& split) const;
  std::uint64_t num_docs(const std::string& domain, const std::string& split) const;
  // Non-overlapping blocks: (tokens - 1) / context.
  std::uint64_t num_blocks(const std::string& domain, const std::string& split, int context) const;
  // out[context+1] = tokens [block*context, block*context + context + 1), one hyperslab read.
  void read_block(const std::string& domain, const std::string& split, std::uint64_t block,
                  int context, std::int32_t* out) const;
  // Throws unless every domain has the split (message names the missing ones and the file).
  void require(const std::vector<std::string>& domains, const std::string& split) const;

 private:
  std::string tokens_path(const std::string& domain, const std::string& split) const;

  std::filesystem::path path_;
  h5::File file_;
  int vocab_size_ = 0;
  int bos_id_ = -1;
  int eos_id_ = -1;
  // Token datasets opened by read_block, kept open with their dataspaces: one H5Dopen per
  // split, not per block.
  struct OpenTokens {
    h5::Handle dataset, file_space, mem_space;
    hsize_t size = 0;
    bool narrow = true;  // uint16 tokens (else uint32)
    int context = 0;     // the block length mem_space was made for
  };
  mutable std::map<std::string, OpenTokens> open_tokens_;
  mutable std::vector<std::uint16_t> narrow_buffer_;  // read raw, widened to int32 by hand
};

}  // namespace btm
