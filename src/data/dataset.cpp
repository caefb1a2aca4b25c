#include "btm/data/dataset.hpp"

#include <algorithm>
#include <map>

#include "btm/error.hpp"

namespace btm {

namespace {

h5::File open_data_file(const std::filesystem::path& path) {
  h5::File f = h5::open_for_read(path, "a btm data file written by the prepare phase");
  if (!f.exists("/tokenizer/model") || !f.exists("/domains")) {
    throw Error(path.string() + " is not a btm data file (expected /tokenizer/model and /domains, "
                "written by the prepare phase)");
  }
  return f;
}

}  // namespace

Dataset::Dataset(const std::filesystem::path& data_h5) : path_(data_h5), file_(open_data_file(data_h5)) {
  vocab_size_ = file_.attr<std::int32_t>("/tokenizer/model", "vocab_size");
  bos_id_ = file_.attr<std::int32_t>("/tokenizer/model", "bos_id");
  eos_id_ = file_.attr<std::int32_t>("/tokenizer/model", "eos_id");
}

std::string Dataset::tokenizer_model() const {
  auto bytes = file_.read<std::uint8_t>("/tokenizer/model");
  return std::string(bytes.begin(), bytes.end());
}

std::vector<std::string> Dataset::domains() const { return file_.list("/domains"); }

std::string Dataset::tokens_path(const std::string& domain, const std::string& split) const {
  return "/domains/" + domain + "/" + split + "/tokens";
}

bool Dataset::has(const std::string& domain, const std::string& split) const {
  return file_.exists(tokens_path(domain, split));
}

std::uint64_t Dataset::num_tokens(const std::string& domain, const std::string& split) const {
  if (!has(domain, split)) {
    throw Error(path_.string() + ": no split \"" + split + "\" for domain \"" + domain + "\"");
  }
  auto dims = file_.shape(tokens_path(domain, split));
  return dims.empty() ? 0 : dims[0];
}

std::uint64_t Dataset::num_docs(const std::string& domain, const std::string& split) const {
  if (!has(domain, split)) {
    throw Error(path_.string() + ": no split \"" + split + "\" for domain \"" + domain + "\"");
  }
  auto dims = file_.shape("/domains/" + domain + "/" + split + "/doc_offsets");
  return dims.empty() || dims[0] == 0 ? 0 : dims[0] - 1;
}

std::uint64_t Dataset::num_blocks(const std::string& domain, const std::string& split, int context) const {
  if (context <= 0) throw Error("num_blocks: context must be positive (got " + std::to_string(context) + ")");
  std::uint64_t n = num_tokens(domain, split);
  return n == 0 ? 0 : (n - 1) / static_cast<std::uint64_t>(context);
}

void Dataset::read_block(const std::string& domain, const std::string& split, std::uint64_t block,
                         int context, std::int32_t* out) const {
  // out: [context + 1] int32
  const std::string path = tokens_path(domain, split);
  auto it = open_tokens_.find(path);
  if (it == open_tokens_.end()) {
    if (!has(domain, split)) {
      throw Error(path_.string() + ": no split \"" + split + "\" for domain \"" + domain + "\"");
    }
    OpenTokens t;
    t.dataset = h5::Handle(H5Dopen2(file_.id(), path.c_str(), H5P_DEFAULT));
    BTM_H5(t.dataset.get());
    t.file_space = h5::Handle(H5Dget_space(t.dataset.get()));
    BTM_H5(t.file_space.get());
    BTM_H5(H5Sget_simple_extent_dims(t.file_space.get(), &t.size, nullptr));
    h5::Handle type(H5Dget_type(t.dataset.get()));
    BTM_H5(type.get());
    if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_sign(type.get()) != H5T_SGN_NONE ||
        (H5Tget_size(type.get()) != 2 && H5Tget_size(type.get()) != 4)) {
      throw Error(path_.string() + ":" + path + ": expected uint16 or uint32 tokens");
    }
    t.narrow = H5Tget_size(type.get()) == 2;
    it = open_tokens_.emplace(path, std::move(t)).first;
  }
  OpenTokens& t = it->second;
  const hsize_t n = t.size;
  hsize_t offset = block * static_cast<hsize_t>(context), count = static_cast<hsize_t>(context) + 1;
  if (context <= 0 || offset + count > n) {
    throw Error(path_.string() + ":" + path + ": block " + std::to_string(block) + " of context " +
                std::to_string(context) + " is past the end (" + std::to_string(n) + " tokens, " +
                std::to_string(n == 0 || context <= 0 ? 0 : (n - 1) / context) + " blocks)");
  }
  if (t.context != context) {
    t.mem_space = h5::Handle(H5Screate_simple(1, &count, nullptr));
    BTM_H5(t.mem_space.get());
    t.context = context;
  }
  BTM_H5(H5Sselect_hyperslab(t.file_space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr));
  const hid_t d = t.dataset.get();
  if (t.narrow) {
    // Reading the stored type and widening here skips HDF5's conversion machinery, which
    // costs more than the read itself for blocks this small.
    narrow_buffer_.resize(count);
    BTM_H5(H5Dread(d, H5T_NATIVE_UINT16, t.mem_space.get(), t.file_space.get(), H5P_DEFAULT, narrow_buffer_.data()));
    for (hsize_t i = 0; i < count; ++i) out[i] = narrow_buffer_[i];
  } else {
    static_assert(sizeof(std::uint32_t) == sizeof(std::int32_t));
    BTM_H5(H5Dread(d, H5T_NATIVE_UINT32, t.mem_space.get(), t.file_space.get(), H5P_DEFAULT, out));
    for (hsize_t i = 0; i < count; ++i) {
      if (out[i] < 0) throw Error(path_.string() + ":" + path + ": token id above 2^31 at " + std::to_string(offset + i));
    }
  }
}

void Dataset::require(const std::vector<std::string>& domains, const std::string& split) const {
  std::vector<std::string> missing;
  for (const auto& d : domains) {
    if (!has(d, split)) missing.push_back(d);
  }
  if (missing.empty()) return;
  std::string list;
  for (const auto& d : missing) list += (list.empty() ? "" : ", ") + d;
  std::string found;
  for (const auto& d : this->domains()) found += (found.empty() ? "" : ", ") + d;
  throw Error(path_.string() + ": no \"" + split + "\" split for domain(s) " + list +
              " (domains in the file: " + (found.empty() ? "none" : found) +
              "; re-run the prepare phase with these domains, or change the deck's domains)");
}

}  // namespace btm
