#pragma once
// What HDF5 says about a failed call, for the messages of the h5 layer (src/core only).
#include <string>

namespace btm {

// After a failed HDF5 call: the system's reason when a system call failed underneath ("No
// space left on device", a read-only file system), else ""; clears HDF5's error stack.
std::string take_h5_system_reason();

}  // namespace btm
