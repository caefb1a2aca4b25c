// `btm inspect`: a readable summary of a btm HDF5 file, recognised by its layout (ARCHITECTURE,
// Files). Anything unrecognised gets a generic tree: groups, datasets (dtype, shape) and
// attributes.
#include "btm/inspect.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "btm/h5.hpp"

namespace btm {

namespace {

using h5::File;
using h5::Handle;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

std::string type_name(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * H5Tget_size(type));
    case H5T_FLOAT: return "float" + std::to_string(8 * H5Tget_size(type));
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    default: return "other";
  }
}

std::string shape_text(const std::vector<hsize_t>& dims) {
  if (dims.empty()) return "scalar";
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::vector<hsize_t> space_dims(hid_t space) {
  int rank = H5Sget_simple_extent_ndims(space);
  BTM_H5(rank);
  std::vector<hsize_t> dims(rank);
  if (rank > 0) BTM_H5(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  return dims;
}

// One attribute as display text: scalars in full, strings shortened, arrays summarised.
std::string attribute_text(hid_t obj, const std::string& name) {
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  BTM_H5(a.get());
  Handle type(H5Aget_type(a.get()));
  Handle space(H5Aget_space(a.get()));
  auto dims = space_dims(space.get());
  hsize_t n = std::accumulate(dims.begin(), dims.end(), hsize_t(1), std::multiplies<>());
  H5T_class_t cls = H5Tget_class(type.get());
  if (n != 1) return type_name(type.get()) + " " + shape_text(dims);
  if (cls == H5T_STRING) {
    std::string value;
    if (H5Tis_variable_str(type.get()) > 0) {
      char* p = nullptr;
      Handle mem(H5Tcopy(H5T_C_S1));
      BTM_H5(H5Tset_size(mem.get(), H5T_VARIABLE));
      BTM_H5(H5Tset_cset(mem.get(), H5Tget_cset(type.get())));
      BTM_H5(H5Aread(a.get(), mem.get(), &p));
      value = p ? p : "";
      H5free_memory(p);
    } else {
      value.assign(H5Tget_size(type.get()), '\0');
      BTM_H5(H5Aread(a.get(), type.get(), value.data()));
      value.resize(std::strlen(value.c_str()));
    }
    auto lines = std::count(value.begin(), value.end(), '\n');
    if (lines > 0 || value.size() > 100) {
      return "(text, " + std::to_string(value.size()) + " bytes, " + std::to_string(lines + (value.empty() || value.back() == '\n' ? 0 : 1)) + " lines)";
    }
    return "\"" + value + "\"";
  }
  if (cls == H5T_INTEGER || cls == H5T_ENUM) {
    if (H5Tget_sign(type.get()) == H5T_SGN_NONE) {
      std::uint64_t v = 0;
      BTM_H5(H5Aread(a.get(), H5T_NATIVE_UINT64, &v));
      return std::to_string(v);
    }
    std::int64_t v = 0;
    BTM_H5(H5Aread(a.get(), H5T_NATIVE_INT64, &v));
    return std::to_string(v);
  }
  if (cls == H5T_FLOAT) {
    double v = 0;
    BTM_H5(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v));
    return fmt("%.6g", v);
  }
  return type_name(type.get());
}

std::map<std::string, std::string> attributes(const File& f, const std::string& path) {
  std::map<std::string, std::string> out;
  if (!f.exists(path)) return out;
  Handle obj(H5Oopen(f.id(), path.c_str(), H5P_DEFAULT));
  BTM_H5(obj.get());
  for (const auto& name : f.attr_names(path)) out[name] = attribute_text(obj.get(), name);
  return out;
}

std::string attr_or(const std::map<std::string, std::string>& attrs, const std::string& key, const std::string& dflt = "-") {
  auto it = attrs.find(key);
  if (it == attrs.end()) return dflt;
  std::string v = it->second;
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

bool is_group(const File& f, const std::string& path) {
  if (!f.exists(path)) return false;
  H5O_info_t info;
  BTM_H5(H5Oget_info_by_name(f.id(), path.c_str(), &info, H5P_DEFAULT));
  return info.type == H5O_TYPE_GROUP;
}

std::string child(const std::string& group, const std::string& name) {
  return group == "/" ? "/" + name : group + "/" + name;
}

struct DatasetInfo {
  std::string type;
  H5T_class_t cls = H5T_NO_CLASS;
  bool is_unsigned = false;
  std::vector<hsize_t> dims;
};

DatasetInfo dataset_info(const File& f, const std::string& path) {
  Handle d(H5Dopen2(f.id(), path.c_str(), H5P_DEFAULT));
  BTM_H5(d.get());
  Handle type(H5Dget_type(d.get()));
  Handle space(H5Dget_space(d.get()));
  DatasetInfo info;
  info.type = type_name(type.get());
  info.cls = H5Tget_class(type.get());
  info.is_unsigned = info.cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_NONE;
  info.dims = space_dims(space.get());
  return info;
}

// A 1-D dataset as display strings (numbers, strings); `float_format` for floats.
std::vector<std::string> column(const File& f, const std::string& path, const char* float_format = "%.4f") {
  DatasetInfo info = dataset_info(f, path);
  std::vector<std::string> out;
  if (info.cls == H5T_STRING) return f.read_strings(path);
  if (info.cls == H5T_INTEGER && info.is_unsigned) {
    for (auto v : f.read<std::uint64_t>(path)) out.push_back(std::to_string(v));
  } else if (info.cls == H5T_INTEGER) {
    for (auto v : f.read<std::int64_t>(path)) out.push_back(std::to_string(v));
  } else if (info.cls == H5T_FLOAT) {
    for (auto v : f.read<double>(path)) out.push_back(fmt(float_format, v));
  } else {
    std::uint64_t n = info.dims.empty() ? 1 : info.dims[0];
    out.assign(n, info.type);
  }
  return out;
}

void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows, const std::string& indent = "  ") {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  auto numeric = [&](std::size_t c) {
    return !rows.empty() && std::all_of(rows.begin(), rows.end(), [&](const auto& r) {
      return !r[c].empty() && r[c].find_first_not_of("0123456789.,-+eE") == std::string::npos;
    });
  };
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = indent;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      std::string pad(width[c] - cells[c].size(), ' ');
      s += (c ? "  " : "") + (numeric(c) ? pad + cells[c] : cells[c] + (c + 1 < cells.size() ? pad : ""));
    }
    out << s << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

// The 1-D datasets of `group` that share the most common length, as a table (eval
// results, the forest manifest). `first` names columns to put first when present.
bool print_parallel_table(std::ostream& out, const File& f, const std::string& group,
                          const std::vector<std::string>& first) {
  std::map<hsize_t, std::vector<std::string>> by_length;
  for (const auto& name : f.list(group)) {
    std::string p = child(group, name);
    if (is_group(f, p)) continue;
    auto info = dataset_info(f, p);
    if (info.dims.size() == 1) by_length[info.dims[0]].push_back(name);
  }
  if (by_length.empty()) return false;
  auto best = std::max_element(by_length.begin(), by_length.end(),
                               [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
  std::vector<std::string> names;
  for (const auto& c : first) {
    if (std::find(best->second.begin(), best->second.end(), c) != best->second.end()) names.push_back(c);
  }
  for (const auto& c : best->second) {
    if (std::find(names.begin(), names.end(), c) == names.end()) names.push_back(c);
  }
  std::vector<std::vector<std::string>> cols;
  for (const auto& c : names) cols.push_back(column(f, child(group, c), c == "perplexity" ? "%.3f" : "%.4f"));
  std::vector<std::vector<std::string>> rows(best->first, std::vector<std::string>(names.size()));
  for (std::size_t c = 0; c < names.size(); ++c) {
    for (hsize_t r = 0; r < best->first; ++r) rows[r][c] = cols[c][r];
  }
  print_table(out, names, rows);
  return true;
}

void print_attrs(std::ostream& out, const File& f, const std::string& path, const std::string& indent = "  ") {
  for (const auto& [k, v] : attributes(f, path)) out << indent << k << " = " << v << "\n";
}

void print_meta(std::ostream& out, const File& f) {
  if (!f.exists("/meta")) return;
  out << "meta:\n";
  print_attrs(out, f, "/meta");
}

// ---- generic tree --------------------------------------------------------------------

void print_tree(std::ostream& out, const File& f, const std::string& path, int depth) {
  std::string indent(2 * depth, ' ');
  for (const auto& [k, v] : attributes(f, path)) out << indent << "  @" << k << " = " << v << "\n";
  if (!is_group(f, path)) return;
  for (const auto& name : f.list(path)) {
    std::string p = child(path, name);
    if (is_group(f, p)) {
      out << indent << "  " << name << "/\n";
      print_tree(out, f, p, depth + 1);
    } else {
      auto info = dataset_info(f, p);
      out << indent << "  " << name << "  " << info.type << " " << shape_text(info.dims) << "\n";
      for (const auto& [k, v] : attributes(f, p)) out << indent << "    @" << k << " = " << v << "\n";
    }
  }
}

// ---- recognised layouts -------------------------------------------------------------

void inspect_data(std::ostream& out, const File& f) {
  auto tok = attributes(f, "/tokenizer/model");
  auto model_bytes = f.shape("/tokenizer/model");
  out << "data file (prepare): " << f.path().string() << "\n";
  out << "tokenizer: SentencePiece, vocab_size=" << attr_or(tok, "vocab_size") << " bos_id=" << attr_or(tok, "bos_id")
      << " eos_id=" << attr_or(tok, "eos_id") << " model_bytes=" << (model_bytes.empty() ? 0 : model_bytes[0])
      << " source=" << attr_or(tok, "source") << "\n";
  auto dom = attributes(f, "/domains");
  out << "train domains: " << attr_or(dom, "train") << "\n";
  out << "held-out domains: " << attr_or(dom, "heldout", "") << "\n";
  out << "skipped documents: invalid_utf8=" << attr_or(dom, "skipped_invalid_utf8", "0")
      << " empty=" << attr_or(dom, "skipped_empty", "0") << "\n";
  std::vector<std::vector<std::string>> rows;
  std::uint64_t docs = 0, tokens = 0;
  double mb = 0;
  for (const auto& domain : f.list("/domains")) {
    std::string g = "/domains/" + domain;
    if (!is_group(f, g)) continue;
    auto da = attributes(f, g);
    for (const char* split : {"train", "valid", "test"}) {
      std::string s = g + "/" + split;
      if (!f.exists(s + "/tokens")) continue;
      auto t = f.shape(s + "/tokens");
      auto o = f.exists(s + "/doc_offsets") ? f.shape(s + "/doc_offsets") : std::vector<hsize_t>{1};
      std::uint64_t n_docs = o.empty() || o[0] == 0 ? 0 : o[0] - 1, n_tok = t.empty() ? 0 : t[0];
      auto sa = attributes(f, s);
      double split_mb = sa.count("text_bytes") ? std::stod(sa["text_bytes"]) / 1e6 : 0.0;
      rows.push_back({domain, attr_or(da, "role"), split, with_commas(n_docs), with_commas(n_tok),
                      sa.count("text_bytes") ? fmt("%.3f", split_mb) : "-", dataset_info(f, s + "/tokens").type});
      docs += n_docs;
      tokens += n_tok;
      mb += split_mb;
    }
  }
  rows.push_back({"total", "", "", with_commas(docs), with_commas(tokens), fmt("%.3f", mb), ""});
  print_table(out, {"domain", "role", "split", "docs", "tokens", "MB", "dtype"}, rows);
  print_meta(out, f);
}

void inspect_model(std::ostream& out, const File& f) {
  auto meta = attributes(f, "/meta");
  out << "model file (" << attr_or(meta, "phase") << "): " << f.path().string() << "\n";
  out << "config:\n";
  print_attrs(out, f, "/config");
  std::uint64_t params = 0, tensors = 0;
  std::function<void(const std::string&)> count = [&](const std::string& g) {
    for (const auto& name : f.list(g)) {
      std::string p = child(g, name);
      if (is_group(f, p)) {
        count(p);
        continue;
      }
      auto dims = f.shape(p);
      params += std::accumulate(dims.begin(), dims.end(), std::uint64_t(1), std::multiplies<>());
      ++tensors;
    }
  };
  count("/params");
  out << "parameters: " << with_commas(params) << " in " << tensors << " tensors (" << fmt("%.2f", params / 1e6)
      << " M)\n";
  if (f.exists("/train")) {
    out << "training:\n";
    print_attrs(out, f, "/train");
  }
  if (f.exists("/metrics/step")) {
    auto steps = column(f, "/metrics/step");
    out << "metrics: " << steps.size() << " records";
    if (!steps.empty()) {
      out << ", last:";
      for (const char* m : {"step", "loss", "aux_loss", "lr", "grad_norm", "tokens_per_s"}) {
        std::string p = std::string("/metrics/") + m;
        if (!f.exists(p)) continue;
        const std::string name = m;
        auto v = column(f, p, name == "lr" ? "%.3e" : name == "tokens_per_s" ? "%.0f" : "%.4f");
        if (!v.empty()) out << " " << m << "=" << v.back();
      }
    }
    out << "\n";
  }
  if (is_group(f, "/metrics/valid")) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& domain : f.list("/metrics/valid")) {
      std::string p = "/metrics/valid/" + domain;
      if (is_group(f, p)) continue;
      auto v = column(f, p);
      rows.push_back({domain, v.empty() ? "-" : v.back(), std::to_string(v.size())});
    }
    if (!rows.empty()) {
      out << "validation loss (last):\n";
      print_table(out, {"domain", "loss", "records"}, rows);
    }
  }
  out << "meta: phase=" << attr_or(meta, "phase") << " name=" << attr_or(meta, "name") << " parent="
      << attr_or(meta, "parent") << " domain=" << attr_or(meta, "domain") << " version=" << attr_or(meta, "version")
      << "\n";
}

void inspect_eval(std::ostream& out, const File& f) {
  out << "evaluation results: " << f.path().string() << "\n";
  out << "settings:\n";
  print_attrs(out, f, "/results");
  print_parallel_table(out, f, "/results", {"method", "domain", "split", "tokens", "nll", "perplexity"});
  // Cached priors: /priors/experts names the columns, /priors/<ensemble>/<domain> the rows.
  if (f.exists("/priors/experts")) {
    auto experts = f.read_strings("/priors/experts");
    std::vector<std::string> header = {"ensemble", "domain"};
    header.insert(header.end(), experts.begin(), experts.end());
    std::vector<std::vector<std::string>> rows;
    for (const auto& ens : f.list("/priors")) {
      if (!is_group(f, "/priors/" + ens)) continue;
      for (const auto& domain : f.list("/priors/" + ens)) {
        auto w = column(f, "/priors/" + ens + "/" + domain, "%.3f");
        if (w.size() != experts.size()) continue;
        std::vector<std::string> row = {ens, domain};
        row.insert(row.end(), w.begin(), w.end());
        rows.push_back(std::move(row));
      }
    }
    if (!rows.empty()) {
      out << "cached priors (weight per expert):\n";
      print_table(out, header, rows);
    }
  }
  print_meta(out, f);
}

void inspect_forest(std::ostream& out, const File& f, const std::string& group) {
  out << "ELM forest manifest: " << f.path().string() << "\n";
  print_attrs(out, f, group);
  if (!print_parallel_table(out, f, group, {"name", "domain", "cluster", "parent", "tokens", "file"})) {
    out << "  (no experts)\n";
  }
  print_meta(out, f);
}

void inspect_clusters(std::ostream& out, const File& f) {
  out << "clusters (C-BTM): " << f.path().string() << "\n";
  print_attrs(out, f, "/");
  // Every dataset with its shape; assignments also as a count per cluster.
  std::function<void(const std::string&)> walk = [&](const std::string& g) {
    for (const auto& name : f.list(g)) {
      std::string p = child(g, name);
      if (is_group(f, p)) {
        walk(p);
        continue;
      }
      auto info = dataset_info(f, p);
      out << "  " << p << "  " << info.type << " " << shape_text(info.dims) << "\n";
      if (name == "assignments" && info.cls == H5T_INTEGER && info.dims.size() == 1) {
        std::map<std::int64_t, std::uint64_t> sizes;
        for (auto v : f.read<std::int64_t>(p)) ++sizes[v];
        std::vector<std::vector<std::string>> rows;
        for (const auto& [c, n] : sizes) rows.push_back({std::to_string(c), with_commas(n)});
        print_table(out, {"cluster", "members"}, rows, "    ");
      }
    }
  };
  walk("/");
}

// The group holding a forest manifest, or "".
std::string forest_group(const File& f) {
  for (const char* g : {"/manifest", "/experts", "/forest"}) {
    if (is_group(f, g)) return g;
  }
  return f.path().filename() == "forest.h5" ? "/" : "";
}

}  // namespace

void inspect_file(const std::filesystem::path& path, std::ostream& out) {
  File f = h5::open_for_read(path, "an HDF5 file");
  if (f.exists("/config") && f.exists("/params")) return inspect_model(out, f);
  if (f.exists("/tokenizer/model") && is_group(f, "/domains")) return inspect_data(out, f);
  if (is_group(f, "/results") && f.exists("/results/method")) return inspect_eval(out, f);
  if (f.exists("/centroids") || f.exists("/clusters/centroids") || path.filename() == "clusters.h5") {
    return inspect_clusters(out, f);
  }
  if (std::string g = forest_group(f); !g.empty()) return inspect_forest(out, f, g);
  out << "HDF5 file (not a btm layout): " << path.string() << "\n/\n";
  print_tree(out, f, "/", 0);
}

}  // namespace btm
