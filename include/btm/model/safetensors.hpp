#pragma once
// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"<name>": {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {...}}
// padded with spaces to a multiple of 8, then the tensors' raw little-endian bytes, packed
// one after another in the order of their offsets. Sharded checkpoints add
// model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map": {name: file}}).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace btm {

enum class TensorDtype { f32, bf16, f16 };
const char* safetensors_dtype_name(TensorDtype dtype);  // "F32", "BF16", "F16"
std::size_t dtype_bytes(TensorDtype dtype);

// fp32 -> bf16 / fp16 with round-to-nearest-even (NaN stays NaN); and back, exactly.
std::uint16_t float_to_bf16(float x);
std::uint16_t float_to_f16(float x);  // beyond the fp16 range: +-inf
float bf16_to_float(std::uint16_t h);
float f16_to_float(std::uint16_t h);

// A tensor to write: fp32 host data converted to `dtype` on the way out.
struct TensorToWrite {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data = nullptr;  // [prod(shape)]
};

// Writes one safetensors file, tensors sorted by name; `metadata` goes to "__metadata__".
// Throws naming the tensor when a value does not fit `dtype` (fp16 overflow).
void write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors, TensorDtype dtype,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes `tensors` into `dir`: one model.safetensors when their bytes fit `shard_bytes`,
// else model-0000i-of-0000n.safetensors shards (whole tensors, in name order, each shard
// at most shard_bytes unless one tensor alone is larger) and model.safetensors.index.json.
// Returns the files written (names inside dir).
std::vector<std::string> write_safetensors_checkpoint(const std::filesystem::path& dir,
                                                      std::vector<TensorToWrite> tensors, TensorDtype dtype,
                                                      std::uint64_t shard_bytes);

struct TensorEntry {
  std::string dtype;  // as in the header: "F32", "BF16", "F16" (others are refused on read)
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data section
  std::uint64_t numel() const;
};

// One safetensors file, its header checked on open: the header length against the file
// size, every entry's dtype, shape and offsets against the data section. Errors name the
// file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::filesystem::path path);
  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorEntry>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor converted to fp32, into out[numel]; throws for an unsupported dtype.
  void read_f32(const std::string& name, float* out) const;

 private:
  std::filesystem::path path_;
  std::uint64_t data_start_ = 0;
  std::map<std::string, TensorEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint folder: model.safetensors.index.json and its shards when the index exists,
// else model.safetensors. Every tensor is listed once (a name in two shards is an error).
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir);
  std::vector<std::string> names() const;
  const TensorEntry& entry(const std::string& name) const;  // throws for an unknown name
  const std::filesystem::path& file_of(const std::string& name) const;
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  void read_f32(const std::string& name, float* out) const;

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t> where_;  // tensor -> index into files_
};

}  // namespace btm
