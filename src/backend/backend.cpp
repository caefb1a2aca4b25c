// Backend factory and the helpers shared by every backend.
#include "btm/ops/backend.hpp"

#include "btm/error.hpp"
#include "backend/cpu/cpu_backend.hpp"
#ifdef BTM_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace btm {

std::size_t dtype_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

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
