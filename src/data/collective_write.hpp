#pragma once
// Collective (MPI-IO) writes of 1-D datasets where every rank holds one contiguous part:
// the token streams of the prepare phase, written by all ranks at once instead of being
// gathered on rank 0 (whose memory would then bound the corpus size).
#include <hdf5.h>

#include <cstdint>
#include <string>

#include "btm/h5.hpp"

namespace btm {

// Creates `dataset_path` (groups on the way included) in `file` (opened with a
// communicator) with `total` elements of `file_type`, and writes this rank's `count`
// elements at `offset` from `data` (memory type `mem_type`) in one collective H5Dwrite.
// Collective: every rank calls it with the same path, type and total; count may be 0.
void write_collective_1d(h5::File& file, const std::string& dataset_path, hid_t file_type, hid_t mem_type,
                         hsize_t total, hsize_t offset, hsize_t count, const void* data);

}  // namespace btm
