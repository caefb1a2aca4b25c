#pragma once
// Read access to data.h5 (DESIGN, Files): the tokenizer and, per domain and split, a token
// stream with documents separated by EOS. A "block" is context+1 consecutive tokens
// starting at block*context: inputs are its first `context` tokens, targets its last.
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
  // Token datasets opened by read_block, kept open: one H5Dopen per split, not per block.
  mutable std::map<std::string, h5::Handle> open_tokens_;
};

}  // namespace btm
