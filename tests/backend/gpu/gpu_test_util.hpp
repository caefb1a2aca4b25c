#pragma once
// Helpers for comparing the cuda backend with the cpu reference backend: bf16 rounding on
// the host, uploads in each backend's compute dtype, outputs poisoned with NaN and fenced by
// a guard region, and element-wise comparison with an explicit error bound.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "btm/ops/backend.hpp"

namespace btm::test {

// Host bf16: round-to-nearest-even, as __float2bfloat16_rn.
std::uint16_t to_bf16_bits(float v);
float from_bf16_bits(std::uint16_t b);
inline float bf16_round(float v) { return from_bf16_bits(to_bf16_bits(v)); }

// Uniform values in [lo, hi), rounded to bf16 so that both backends see identical inputs.
std::vector<float> random_bf16(std::size_t n, float lo, float hi, std::mt19937& rng);
std::vector<float> random_f32(std::size_t n, float lo, float hi, std::mt19937& rng);

// The cuda backend under test and the cpu reference.
struct Backends {
  std::unique_ptr<Backend> cpu;
  std::unique_ptr<Backend> gpu;
};
Backends make_backends();

// A device buffer of n elements plus a guard region that must stay untouched.
class Buffer {
 public:
  enum class Kind { compute, f32, i32 };
  // Fills the n elements with `values` (empty: NaN poison) and the guard with a sentinel.
  Buffer(Backend& backend, Kind kind, std::size_t n, const std::vector<float>& values = {});
  Buffer(Backend& backend, const std::vector<std::int32_t>& values);  // int32, no poison

  void* get() const { return storage_.get(); }
  float* f32() const { return storage_.f32(); }
  std::int32_t* i32() const { return storage_.i32(); }
  std::size_t size() const { return n_; }

  std::vector<float> read() const;  // the n elements as float
  bool guard_intact() const;

 private:
  std::size_t element_bytes() const;
  Backend* backend_;
  Kind kind_;
  std::size_t n_;
  DeviceBuffer storage_;
};

inline constexpr std::size_t kGuard = 64;

// Fails (gtest) unless |got - want| <= atol + rtol * |want| everywhere; NaN never passes.
// Reports the worst elements. Returns whether it passed.
bool expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const std::string& what);
// Root mean square, for bounds relative to a tensor's typical magnitude.
double rms(const std::vector<float>& v);

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace btm::test
