#pragma once
#include <memory>

#include "btm/ops/backend.hpp"

namespace btm {
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);
}
