#include "data_helpers.hpp"

#include <mpi.h>

#include "btm/h5.hpp"
#include "support/test_paths.hpp"

namespace btm::test {

void write_synthetic_data(const std::filesystem::path& path, const std::vector<SyntheticSplit>& splits) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::filesystem::create_directories(path.parent_path());
    h5::File f(path, h5::File::Mode::create);
    f.write<std::uint8_t>("/tokenizer/model", std::vector<std::uint8_t>{1, 2, 3});
    f.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", 65536);
    f.set_attr<std::int64_t>("/tokenizer/model", "bos_id", 1);
    f.set_attr<std::int64_t>("/tokenizer/model", "eos_id", 2);
    for (const auto& s : splits) {
      std::vector<std::uint16_t> tokens(s.tokens);
      for (std::uint64_t i = 0; i < s.tokens; ++i) tokens[i] = static_cast<std::uint16_t>((s.first + i) % 65536);
      const std::string g = "/domains/" + s.domain + "/" + s.split;
      f.write<std::uint16_t>(g + "/tokens", tokens);
      f.write<std::uint64_t>(g + "/doc_offsets", std::vector<std::uint64_t>{0, s.tokens});
      f.write_strings(g + "/doc_ids", {s.domain + "/0"});
    }
    f.set_attr("/domains", "train", std::string(""));
    f.set_attr("/domains", "heldout", std::string(""));
    f.set_attr("/meta", "phase", std::string("prepare"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

Deck fixture_deck(const std::filesystem::path& out_dir, const std::string& fixture) {
  Deck deck;
  deck.run.out_dir = out_dir;
  deck.run.seed = 7;
  deck.data.corpus = test_data_dir() / "fixtures" / fixture;
  deck.data.vocab_size = 512;
  deck.data.tokenizer_sample_mb = 0.06;
  if (fixture == "split_jsonl") deck.data.heldout_domains = {"tech-lexicon"};
  if (fixture == "text_tree") {
    // Four documents per domain and no splits: fractions at which the hash split of the
    // fixture's ids gives every domain a train, a valid and a test document (prepare
    // refuses a domain without one).
    deck.data.valid_fraction = 0.15;
    deck.data.test_fraction = 0.45;
  }
  return deck;
}

}  // namespace btm::test
