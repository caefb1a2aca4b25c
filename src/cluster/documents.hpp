#pragma once
// The documents of data.h5 as the cluster phase sees them: "parts" (domain, split) in a
// fixed order (training domains in data.h5's order, then held-out ones; splits train,
// valid, test), each with its document offsets, and the decoded text of any documents.
#include <cstdint>
#include <string>
#include <vector>

#include "btm/cluster/piece_decoder.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/h5.hpp"

namespace btm::cluster {

struct Part {
  std::string domain, split;
  bool train_domain = false;            // a training domain (clustered), else held out
  std::vector<std::uint64_t> offsets;   // doc_offsets [docs + 1]
  std::uint64_t first = 0;              // global index of its first document
  std::uint64_t docs() const { return offsets.size() - 1; }
};

// A global document: (part index, document index in the part).
struct DocRef {
  std::uint32_t part = 0;
  std::uint64_t doc = 0;
};

class Documents {
 public:
  explicit Documents(const std::filesystem::path& data_h5);  // opens read-only on this rank

  const std::vector<Part>& parts() const { return parts_; }
  std::uint64_t total() const { return total_; }
  std::vector<std::string> train_domains() const { return train_; }
  std::vector<std::string> heldout_domains() const { return heldout_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  int vocab_size() const { return vocab_size_; }
  // Documents (in any order) -> their texts, decoded with the data file's tokenizer (EOS
  // left out); consecutive documents of a part are read in one go.
  std::vector<std::string> texts(const std::vector<DocRef>& docs) const;
  // Every token of a part (EOS included), widened.
  std::vector<std::uint32_t> tokens(const Part& part) const;
  std::vector<std::string> ids(const Part& part) const;

 private:
  h5::File file_;
  std::vector<Part> parts_;
  std::vector<std::string> train_, heldout_;
  std::uint64_t total_ = 0;
  Tokenizer tokenizer_;
  PieceDecoder decoder_;
  int vocab_size_ = 0;
};

}  // namespace btm::cluster
