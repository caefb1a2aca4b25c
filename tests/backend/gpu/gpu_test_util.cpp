#include "gpu_test_util.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

namespace btm::test {

std::uint16_t to_bf16_bits(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  if (std::isnan(v)) return 0x7FC0;
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<std::uint16_t>(u >> 16);
}

float from_bf16_bits(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

std::vector<float> random_bf16(std::size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_round(dist(rng));
  return v;
}

std::vector<float> random_f32(std::size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Backends make_backends() {
  Backends b;
  b.cpu = make_backend("cpu");
  b.gpu = make_backend("cuda");
  return b;
}

namespace {
constexpr float kF32Sentinel = 1234.5f;
constexpr std::uint16_t kBf16Sentinel = 0x4499;
constexpr std::int32_t kI32Sentinel = 0x5A5A5A5A;
}  // namespace

std::size_t Buffer::element_bytes() const {
  if (kind_ == Kind::compute) return dtype_bytes(backend_->compute_dtype());
  return 4;
}

Buffer::Buffer(Backend& backend, Kind kind, std::size_t n, const std::vector<float>& values)
    : backend_(&backend), kind_(kind), n_(n) {
  if (!values.empty() && values.size() != n) throw std::invalid_argument("Buffer: values.size() != n");
  const std::size_t total = n + kGuard;
  storage_ = DeviceBuffer(backend, total * element_bytes());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (element_bytes() == 2) {
    std::vector<std::uint16_t> host(total, kBf16Sentinel);
    for (std::size_t i = 0; i < n; ++i) host[i] = to_bf16_bits(values.empty() ? nan : values[i]);
    backend.copy_to_device(storage_.get(), host.data(), total * 2);
  } else if (kind == Kind::i32) {
    std::vector<std::int32_t> host(total, kI32Sentinel);
    for (std::size_t i = 0; i < n; ++i) host[i] = values.empty() ? -7 : static_cast<std::int32_t>(values[i]);
    backend.copy_to_device(storage_.get(), host.data(), total * 4);
  } else {
    std::vector<float> host(total, kF32Sentinel);
    for (std::size_t i = 0; i < n; ++i) host[i] = values.empty() ? nan : values[i];
    backend.copy_to_device(storage_.get(), host.data(), total * 4);
  }
}

Buffer::Buffer(Backend& backend, const std::vector<std::int32_t>& values)
    : backend_(&backend), kind_(Kind::i32), n_(values.size()) {
  const std::size_t total = n_ + kGuard;
  storage_ = DeviceBuffer(backend, total * 4);
  std::vector<std::int32_t> host(total, kI32Sentinel);
  std::copy(values.begin(), values.end(), host.begin());
  backend.copy_to_device(storage_.get(), host.data(), total * 4);
}

std::vector<float> Buffer::read() const {
  std::vector<float> out(n_);
  if (n_ == 0) return out;
  if (element_bytes() == 2) {
    std::vector<std::uint16_t> host(n_);
    backend_->copy_to_host(host.data(), storage_.get(), n_ * 2);
    for (std::size_t i = 0; i < n_; ++i) out[i] = from_bf16_bits(host[i]);
  } else if (kind_ == Kind::i32) {
    std::vector<std::int32_t> host(n_);
    backend_->copy_to_host(host.data(), storage_.get(), n_ * 4);
    for (std::size_t i = 0; i < n_; ++i) out[i] = float(host[i]);
  } else {
    backend_->copy_to_host(out.data(), storage_.get(), n_ * 4);
  }
  return out;
}

bool Buffer::guard_intact() const {
  const std::size_t eb = element_bytes();
  std::vector<unsigned char> host(kGuard * eb);
  backend_->copy_to_host(host.data(), static_cast<const char*>(storage_.get()) + n_ * eb, host.size());
  for (std::size_t i = 0; i < kGuard; ++i) {
    if (eb == 2) {
      std::uint16_t v;
      std::memcpy(&v, host.data() + i * 2, 2);
      if (v != kBf16Sentinel) return false;
    } else if (kind_ == Kind::i32) {
      std::int32_t v;
      std::memcpy(&v, host.data() + i * 4, 4);
      if (v != kI32Sentinel) return false;
    } else {
      float v;
      std::memcpy(&v, host.data() + i * 4, 4);
      if (v != kF32Sentinel) return false;
    }
  }
  return true;
}

bool expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const std::string& what) {
  if (got.size() != want.size()) {
    ADD_FAILURE() << what << ": size " << got.size() << " != expected " << want.size();
    return false;
  }
  struct Bad {
    std::size_t i;
    double excess;
  };
  std::vector<Bad> bad;
  double max_diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const double diff = std::fabs(g - w);
    const double bound = atol + rtol * std::fabs(w);
    if (std::isfinite(diff)) max_diff = std::max(max_diff, diff);
    if (!(diff <= bound)) bad.push_back({i, std::isfinite(diff) ? diff / bound : 1e300});
  }
  if (bad.empty()) return true;
  std::sort(bad.begin(), bad.end(), [](const Bad& a, const Bad& b) { return a.excess > b.excess; });
  std::ostringstream os;
  os << what << ": " << bad.size() << " of " << got.size() << " elements outside |got - want| <= " << atol << " + "
     << rtol << "*|want| (max finite |diff| " << max_diff << "); worst:";
  for (std::size_t k = 0; k < bad.size() && k < 6; ++k)
    os << " [" << bad[k].i << "] got " << got[bad[k].i] << " want " << want[bad[k].i] << ";";
  ADD_FAILURE() << os.str();
  return false;
}

double rms(const std::vector<float>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s / double(v.size()));
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = std::getenv(name)) {
    had_ = true;
    old_ = old;
  }
  if (value) setenv(name, value, 1);
  else unsetenv(name);
}

ScopedEnv::~ScopedEnv() {
  if (had_) setenv(name_.c_str(), old_.c_str(), 1);
  else unsetenv(name_.c_str());
}

}  // namespace btm::test
