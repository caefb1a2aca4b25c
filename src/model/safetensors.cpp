#include "btm/model/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "btm/data/json.hpp"
#include "btm/error.hpp"

namespace btm {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

const char* safetensors_dtype_name(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::f32: return "F32";
    case TensorDtype::bf16: return "BF16";
    case TensorDtype::f16: return "F16";
  }
  return "?";
}

std::size_t dtype_bytes(TensorDtype dtype) { return dtype == TensorDtype::f32 ? 4 : 2; }

std::uint16_t float_to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // stays a quiet NaN
  const std::uint32_t rounding = 0x7FFF + ((u >> 16) & 1);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

std::uint16_t float_to_f16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000);
  const std::uint32_t abs = u & 0x7FFFFFFF;
  if (abs > 0x7F800000) return sign | 0x7E00;  // NaN
  if (abs >= 0x477FF000) return sign | 0x7C00;  // rounds beyond 65504: inf
  if (abs < 0x38800000) {                       // below 2^-14: subnormal (or zero)
    if (abs < 0x33000000) return sign;          // below half the smallest subnormal
    const std::uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
    // value = mant * 2^(e-150); in units of 2^-24 (the fp16 subnormal step) q = mant >> (126-e)
    const int drop = 126 - static_cast<int>(abs >> 23);
    std::uint32_t q = mant >> drop;
    const std::uint32_t rest = mant & ((1u << drop) - 1), half = 1u << (drop - 1);
    if (rest > half || (rest == half && (q & 1))) ++q;
    return sign | static_cast<std::uint16_t>(q);
  }
  // Normal: rebias the exponent (127 -> 15) and round 23 mantissa bits to 10.
  std::uint32_t v = abs - 0x38000000;
  v += 0xFFF + ((v >> 13) & 1);
  return sign | static_cast<std::uint16_t>(v >> 13);
}

float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in fp32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000 | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

std::uint64_t TensorEntry::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

namespace {

std::uint64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Writes `bytes` to path through a temporary file and a rename: never a half file.
class OutFile {
 public:
  explicit OutFile(std::filesystem::path path) : path_(std::move(path)), tmp_(path_.string() + ".tmp") {
    out_.open(tmp_, std::ios::binary | std::ios::trunc);
    if (!out_) throw Error(path_.string() + ": cannot create the file (" + std::strerror(errno) + ")");
  }
  void write(const void* data, std::size_t n) {
    out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    if (!out_) throw Error(path_.string() + ": write failed (" + std::strerror(errno) + "; disk full?)");
  }
  void commit() {
    out_.close();
    if (!out_) throw Error(path_.string() + ": write failed on close (" + std::strerror(errno) + ")");
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw Error(path_.string() + ": cannot rename the finished file into place (" + ec.message() + ")");
  }
  ~OutFile() {
    if (out_.is_open()) {
      out_.close();
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

 private:
  std::filesystem::path path_, tmp_;
  std::ofstream out_;
};

void convert_out(const TensorToWrite& t, TensorDtype dtype, std::vector<std::uint8_t>& buf,
                 const std::filesystem::path& path) {
  const std::uint64_t n = numel_of(t.shape);
  buf.resize(n * dtype_bytes(dtype));
  if (dtype == TensorDtype::f32) {
    std::memcpy(buf.data(), t.data, n * 4);
    return;
  }
  auto* out = reinterpret_cast<std::uint16_t*>(buf.data());
  for (std::uint64_t i = 0; i < n; ++i) {
    const float x = t.data[i];
    out[i] = dtype == TensorDtype::bf16 ? float_to_bf16(x) : float_to_f16(x);
    if (dtype == TensorDtype::f16 && std::isfinite(x) && !std::isfinite(f16_to_float(out[i]))) {
      throw Error(path.string() + ": tensor " + t.name + " holds " + std::to_string(x) +
                  ", beyond the fp16 range (65504); export as fp32 or bf16");
    }
  }
}

std::uint64_t tensor_bytes(const TensorToWrite& t, TensorDtype dtype) { return numel_of(t.shape) * dtype_bytes(dtype); }

std::string read_file_text(const std::filesystem::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open " + what + " (" + std::strerror(errno) + ")");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path.string() + ": cannot read " + what);
  return text;
}

std::int64_t json_integer(const JsonValue& v, const std::string& where) {
  std::int64_t x = 0;
  const char* end = v.text.data() + v.text.size();
  auto res = std::from_chars(v.text.data(), end, x);
  if (v.type != JsonType::number || res.ec != std::errc() || res.ptr != end || x < 0) {
    throw Error(where + ": expected a non-negative integer, found " + v.text);
  }
  return x;
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors, TensorDtype dtype,
                       const std::map<std::string, std::string>& metadata) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      header += json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    header += "}";
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (i > 0 && t.name == tensors[i - 1].name) throw Error(path.string() + ": tensor " + t.name + " given twice");
    std::string shape;
    for (std::size_t j = 0; j < t.shape.size(); ++j) {
      if (j) shape += ',';
      shape += std::to_string(t.shape[j]);
    }
    const std::uint64_t bytes = tensor_bytes(t, dtype);
    header += std::string(header.size() > 1 ? "," : "") + json_quote(t.name) + ":{\"dtype\":\"" +
              safetensors_dtype_name(dtype) + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  OutFile out(path);
  const std::uint64_t n = header.size();
  out.write(&n, 8);
  out.write(header.data(), header.size());
  std::vector<std::uint8_t> buf;
  for (const auto& t : tensors) {
    convert_out(t, dtype, buf, path);
    out.write(buf.data(), buf.size());
  }
  out.commit();
}

std::vector<std::string> write_safetensors_checkpoint(const std::filesystem::path& dir,
                                                      std::vector<TensorToWrite> tensors, TensorDtype dtype,
                                                      std::uint64_t shard_bytes) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::vector<TensorToWrite>> shards(1);
  std::uint64_t in_shard = 0, total = 0;
  for (auto& t : tensors) {
    const std::uint64_t bytes = tensor_bytes(t, dtype);
    if (!shards.back().empty() && in_shard + bytes > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    in_shard += bytes;
    total += bytes;
    shards.back().push_back(t);
  }
  std::error_code ec;
  // A previous export's files would mix with this one's.
  for (const char* stale : {"model.safetensors", "model.safetensors.index.json"}) std::filesystem::remove(dir / stale, ec);
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("model-") && name.ends_with(".safetensors")) std::filesystem::remove(entry.path(), ec);
  }
  if (shards.size() == 1) {
    write_safetensors(dir / "model.safetensors", std::move(shards[0]), dtype);
    return {"model.safetensors"};
  }
  std::vector<std::string> files;
  std::string weight_map;
  const std::size_t n = shards.size();
  for (std::size_t s = 0; s < n; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n);
    for (const auto& t : shards[s]) weight_map += std::string(weight_map.empty() ? "" : ",\n    ") + json_quote(t.name) + ": " + json_quote(name);
    write_safetensors(dir / name, std::move(shards[s]), dtype);
    files.push_back(name);
  }
  OutFile index(dir / "model.safetensors.index.json");
  const std::string text = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {\n    " +
                           weight_map + "\n  }\n}\n";
  index.write(text.data(), text.size());
  index.commit();
  files.push_back("model.safetensors.index.json");
  return files;
}

SafetensorsFile::SafetensorsFile(std::filesystem::path path) : path_(std::move(path)) {
  const std::string file = path_.string();
  std::error_code ec;
  const std::uint64_t size = std::filesystem::file_size(path_, ec);
  if (ec) throw Error(file + ": cannot open the safetensors file (" + ec.message() + ")");
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw Error(file + ": cannot open the safetensors file (" + std::strerror(errno) + ")");
  std::uint64_t n = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&n), 8)) {
    throw Error(file + ": truncated safetensors file (" + std::to_string(size) + " bytes; the 8-byte header length is missing)");
  }
  if (n > size - 8) {
    throw Error(file + ": the header length (" + std::to_string(n) + " bytes) overruns the file (" + std::to_string(size) +
                " bytes): truncated or not a safetensors file");
  }
  if (n > (100u << 20)) throw Error(file + ": the header length (" + std::to_string(n) + " bytes) exceeds 100 MB: not a safetensors file");
  std::string header(n, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(n))) throw Error(file + ": cannot read the safetensors header");
  data_start_ = 8 + n;
  const std::uint64_t data_size = size - data_start_;
  std::map<std::string, JsonValue> members;
  try {
    members = parse_json_object(header);
  } catch (const JsonError& e) {
    throw Error(file + ": the safetensors header is not a JSON object: " + e.what());
  }
  for (const auto& [name, value] : members) {
    const std::string where = file + ": tensor " + name;
    if (value.type != JsonType::object) throw Error(where + ": expected an object, found " + json_type_name(value.type));
    const auto fields = parse_json_object(value.text);
    if (name == "__metadata__") {
      for (const auto& [k, v] : fields) {
        if (v.type != JsonType::string) throw Error(file + ": __metadata__." + k + ": expected a string, found " + json_type_name(v.type));
        metadata_[k] = v.text;
      }
      continue;
    }
    auto field = [&](const char* key, JsonType type) -> const JsonValue& {
      auto it = fields.find(key);
      if (it == fields.end()) throw Error(where + ": missing \"" + key + "\"");
      if (it->second.type != type) {
        throw Error(where + ": \"" + key + "\" is " + json_type_name(it->second.type) + ", expected " + json_type_name(type));
      }
      return it->second;
    };
    TensorEntry t;
    t.dtype = field("dtype", JsonType::string).text;
    for (const auto& d : parse_json_array(field("shape", JsonType::array).text)) t.shape.push_back(json_integer(d, where + ": shape"));
    const auto offsets = parse_json_array(field("data_offsets", JsonType::array).text);
    if (offsets.size() != 2) throw Error(where + ": data_offsets must hold 2 integers [begin, end)");
    t.begin = static_cast<std::uint64_t>(json_integer(offsets[0], where + ": data_offsets"));
    t.end = static_cast<std::uint64_t>(json_integer(offsets[1], where + ": data_offsets"));
    if (t.begin > t.end || t.end > data_size) {
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                  ") overrun the data section (" + std::to_string(data_size) + " bytes): truncated file?");
    }
    std::size_t elem = 0;
    if (t.dtype == "F32") elem = 4;
    else if (t.dtype == "BF16" || t.dtype == "F16") elem = 2;
    else if (t.dtype == "F64" || t.dtype == "I64" || t.dtype == "U64") elem = 8;
    else if (t.dtype == "I32" || t.dtype == "U32") elem = 4;
    else if (t.dtype == "I16" || t.dtype == "U16") elem = 2;
    else if (t.dtype == "I8" || t.dtype == "U8" || t.dtype == "BOOL" || t.dtype.starts_with("F8")) elem = 1;
    else throw Error(where + ": unknown dtype \"" + t.dtype + "\"");
    if (t.numel() * elem != t.end - t.begin) {
      throw Error(where + ": " + t.dtype + " " + shape_text(t.shape) + " needs " + std::to_string(t.numel() * elem) +
                  " bytes, data_offsets give " + std::to_string(t.end - t.begin));
    }
    tensors_.emplace(name, std::move(t));
  }
}

void SafetensorsFile::read_f32(const std::string& name, float* out) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path_.string() + ": no tensor " + name);
  const TensorEntry& t = it->second;
  if (t.dtype != "F32" && t.dtype != "BF16" && t.dtype != "F16") {
    throw Error(path_.string() + ": tensor " + name + " has dtype " + t.dtype + "; expected F32, BF16 or F16");
  }
  std::ifstream in(path_, std::ios::binary);
  std::vector<char> bytes(t.end - t.begin);
  in.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
  if (!in || !in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    throw Error(path_.string() + ": cannot read tensor " + name + " (file changed or truncated?)");
  }
  const std::uint64_t n = t.numel();
  if (t.dtype == "F32") {
    std::memcpy(out, bytes.data(), n * 4);
    return;
  }
  const bool bf16 = t.dtype == "BF16";
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    out[i] = bf16 ? bf16_to_float(h) : f16_to_float(h);
  }
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  if (std::filesystem::exists(index_path)) {
    const std::string text = read_file_text(index_path, "the safetensors index");
    try {
      const auto index = parse_json_object(text);
      auto it = index.find("weight_map");
      if (it == index.end() || it->second.type != JsonType::object) throw Error("expected a \"weight_map\" object");
      for (const auto& [name, file] : parse_json_object(it->second.text)) {
        if (file.type != JsonType::string) throw Error("weight_map." + name + ": expected a file name (string)");
        weight_map[name] = file.text;
        if (std::find(shard_names.begin(), shard_names.end(), file.text) == shard_names.end()) shard_names.push_back(file.text);
      }
    } catch (const Error& e) {
      throw Error(index_path.string() + ": " + e.what());
    }
    std::sort(shard_names.begin(), shard_names.end());
  } else if (std::filesystem::exists(dir / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints "
                "are not read: save the model with safe_serialization=True)");
  }
  for (const auto& shard : shard_names) {
    if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos) {
      throw Error(index_path.string() + ": shard name \"" + shard + "\" is not a file name in " + dir.string());
    }
    if (!std::filesystem::exists(dir / shard)) {
      throw Error(index_path.string() + " lists " + shard + ", which does not exist in " + dir.string());
    }
    files_.emplace_back(dir / shard);
    for (const auto& [name, entry] : files_.back().tensors()) {
      (void)entry;
      if (where_.count(name)) {
        throw Error(files_.back().path().string() + ": tensor " + name + " is also in " + files_[where_[name]].path().string());
      }
      where_[name] = files_.size() - 1;
    }
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = where_.find(name);
    if (it == where_.end() || files_[it->second].path().filename() != shard) {
      throw Error(index_path.string() + ": weight_map puts " + name + " in " + shard + ", which does not hold it");
    }
  }
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const TensorEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor " + name + " in the checkpoint");
  return files_[it->second].tensors().at(name);
}

const std::filesystem::path& SafetensorsCheckpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor " + name + " in the checkpoint");
  return files_[it->second].path();
}

void SafetensorsCheckpoint::read_f32(const std::string& name, float* out) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor " + name + " in the checkpoint");
  files_[it->second].read_f32(name, out);
}

}  // namespace btm
