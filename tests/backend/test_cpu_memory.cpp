// The cpu backend's identity, memory and copies.
#include <cstring>

#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

TEST(CpuBackend, IsNamedCpuAndComputesInFloat) {
  auto be = cpu_backend();
  EXPECT_EQ(be->name(), "cpu");
  EXPECT_EQ(be->compute_dtype(), DType::f32);
  EXPECT_EQ(dtype_bytes(be->compute_dtype()), 4u);
}

TEST(CpuBackend, AllocReturnsZeroedCacheLineAlignedMemory) {
  auto be = cpu_backend();
  for (std::size_t bytes : {1u, 3u, 64u, 1000u, 1u << 20}) {
    void* p = be->alloc(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u) << bytes;
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < bytes; ++i) ASSERT_EQ(c[i], 0) << bytes << " at " << i;
    be->release(p);
  }
}

TEST(CpuBackend, CopiesRoundTripAndZeroClears) {
  auto be = cpu_backend();
  const Vec src = random_vec(1001, 1);
  DeviceBuffer a(*be, src.size() * 4), b(*be, src.size() * 4);
  be->copy_to_device(a.get(), src.data(), src.size() * 4);
  be->copy(b.get(), a.get(), src.size() * 4);
  EXPECT_EQ(download(*be, b, src.size()), src);
  be->zero(b.get(), 10 * 4);
  const Vec z = download(*be, b, src.size());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(z[i], 0.0f);
  EXPECT_EQ(z[10], src[10]);
}

TEST(CpuBackend, ComputeConversionsAreCopiesAndNoOpsInPlace) {
  auto be = cpu_backend();
  const Vec src = random_vec(77, 2);
  auto a = upload(*be, src);
  DeviceBuffer c(*be, src.size() * 4);
  be->to_compute(a.f32(), c.get(), src.size());
  EXPECT_EQ(download(*be, c, src.size()), src);
  be->to_float(c.get(), a.f32(), src.size());
  be->to_compute(a.f32(), a.get(), src.size());  // aliasing: nothing changes
  be->to_float(a.get(), a.f32(), src.size());
  EXPECT_EQ(download(*be, a, src.size()), src);
}

TEST(CpuBackend, RejectsFewerThanOneBlasThread) {
  BackendOptions options;
  options.blas_threads = 0;
  EXPECT_THROW(make_backend("cpu", options), btm::Error);
  options.blas_threads = 1;
  EXPECT_NO_THROW(make_backend("cpu", options));
}

TEST(CpuBackend, UnknownBackendNameIsAnError) { EXPECT_THROW(make_backend("tpu"), btm::Error); }

}  // namespace
}  // namespace btm::test
