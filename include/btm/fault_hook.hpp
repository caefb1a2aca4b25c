#pragma once
// The fault-injection hook of tests/faults: a process that dies in the middle of writing a
// file. Compiled in always, inert unless the environment arms it:
//   BTM_FAULT_WRITE_KILL_AT_BYTE=N   kill this process (SIGKILL) in the dataset write that
//                                    holds its N-th byte of HDF5 dataset data (N >= 1)
//   BTM_FAULT_WRITE_KILL_FILE=TEXT   count only writes to files whose path contains TEXT
//                                    (the temporary name: "seed.h5", "experts/code-go.h5")
// What the file received before is flushed first, so the temporary file is left half
// written, as after a crash at that byte (ARCHITECTURE, "Errors and bad input").
#include <cstdint>

#include "btm/h5.hpp"

namespace btm::fault {

// Called before `bytes` of dataset data go to `file`. `flush_first` = false for a file
// open with MPI-IO, whose flush is collective (the other ranks are in the write).
void before_dataset_write(const h5::File& file, std::uint64_t bytes, bool flush_first = true);

}  // namespace btm::fault
