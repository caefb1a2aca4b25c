// Placeholder until the cpu backend lands.
#include "backend/cpu/cpu_backend.hpp"
#include "btm/error.hpp"
namespace btm {
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions&) { throw Error("cpu backend pending"); }
}
