// Backend factory and the helpers shared by every backend.
#include "btm/ops/backend.hpp"

#include "btm/error.hpp"
#include "backend/cpu/cpu_backend.hpp"
#ifdef BTM_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace btm {

std::size_t dtype_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

MoeRouting moe_routing_from_name(const std::string& name) {
  if (name == "top_k") return MoeRouting::top_k;
  if (name == "switch") return MoeRouting::switch_top1;
  if (name == "soft") return MoeRouting::soft;
  if (name == "sample_top1") return MoeRouting::sample_top1;
  throw Error("unknown MoE routing \"" + name + "\"; expected top_k, switch, soft or sample_top1");
}

int MoeDispatch::rows() const {
  int m = 0;
  for (int c : counts) m += c;
  return m;
}

int MoeDispatch::offset(int expert) const {
  int m = 0;
  for (int e = 0; e < expert; ++e) m += counts[e];
  return m;
}

bool backend_supports_moe(const std::string& name) { return name == "cpu"; }

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options) {
  if (name == "cpu") return make_cpu_backend(options);
  if (name == "cuda") {
#ifdef BTM_HAVE_CUDA
    return make_cuda_backend(options);
#else
    throw Error("run.backend = \"cuda\", but this btm was built without CUDA; "
                "rebuild with `cmake --preset cuda` on a machine with nvcc");
#endif
  }
  throw Error("unknown backend \"" + name + "\"; expected \"cpu\" or \"cuda\"");
}

}  // namespace btm
