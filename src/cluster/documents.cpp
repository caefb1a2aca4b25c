#include "cluster/documents.hpp"

#include "btm/error.hpp"

namespace btm::cluster {

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

h5::File open_data(const std::filesystem::path& path) {
  h5::File f = h5::open_for_read(path, "a btm data file written by the prepare phase (run prepare before cluster)");
  if (!f.exists("/tokenizer/model") || !f.exists("/domains") || !f.has_attr("/domains", "train")) {
    throw Error(path.string() + " is not a btm data file (expected /tokenizer/model and /domains)");
  }
  return f;
}

std::string model_bytes(const h5::File& f) {
  auto bytes = f.read<std::uint8_t>("/tokenizer/model");
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

Documents::Documents(const std::filesystem::path& data_h5)
    : file_(open_data(data_h5)), tokenizer_(model_bytes(file_)), decoder_(tokenizer_) {
  vocab_size_ = file_.attr<std::int32_t>("/tokenizer/model", "vocab_size");
  train_ = split_commas(file_.string_attr("/domains", "train"));
  heldout_ = split_commas(file_.string_attr("/domains", "heldout"));
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& domain : pass == 0 ? train_ : heldout_) {
      for (const char* split : {"train", "valid", "test"}) {
        const std::string g = "/domains/" + domain + "/" + split;
        if (!file_.exists(g + "/doc_offsets")) continue;
        Part p{domain, split, pass == 0, file_.read<std::uint64_t>(g + "/doc_offsets"), total_};
        if (p.offsets.empty()) p.offsets = {0};
        total_ += p.docs();
        parts_.push_back(std::move(p));
      }
    }
  }
}

std::vector<std::string> Documents::texts(const std::vector<DocRef>& docs) const {
  std::vector<std::string> out(docs.size());
  std::vector<std::uint32_t> run;
  for (std::size_t a = 0; a < docs.size();) {
    // The run [a, b) of consecutive documents of one part.
    std::size_t b = a + 1;
    while (b < docs.size() && docs[b].part == docs[a].part && docs[b].doc == docs[b - 1].doc + 1) ++b;
    const Part& p = parts_[docs[a].part];
    const std::uint64_t t0 = p.offsets[docs[a].doc], t1 = p.offsets[docs[b - 1].doc + 1];
    run.resize(t1 - t0);
    if (t1 > t0) file_.read_slab("/domains/" + p.domain + "/" + p.split + "/tokens", t0, t1 - t0, run.data());
    for (std::size_t i = a; i < b; ++i) {
      const std::uint64_t s = p.offsets[docs[i].doc] - t0, e = p.offsets[docs[i].doc + 1] - t0;
      decoder_.append(run.data() + s, e > s ? e - s - 1 : 0, out[i]);  // without the EOS
    }
    a = b;
  }
  return out;
}

std::vector<std::uint32_t> Documents::tokens(const Part& part) const {
  return file_.read<std::uint32_t>("/domains/" + part.domain + "/" + part.split + "/tokens");
}

std::vector<std::string> Documents::ids(const Part& part) const {
  return file_.read_strings("/domains/" + part.domain + "/" + part.split + "/doc_ids");
}

}  // namespace btm::cluster
