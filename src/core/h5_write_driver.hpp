#pragma once
// The HDF5 file driver for files btm writes on one process (src/core only).
//
// Why: HDF5 1.10 cannot close a file once a flush of it has failed (its metadata cache is
// left half-flushed, every later flush fails, and the half-destroyed file stays registered
// until MPI_Finalize, where it crashes the process). A full disk during an expert's
// checkpoint is an error btm isolates and survives, so the file must still close cleanly.
// This driver forwards every call to HDF5's POSIX driver (sec2); a write, truncate or close
// that fails is recorded instead of reported to HDF5, later writes of that file are skipped,
// and h5::File throws the recorded error itself (take_write_error).
#include <hdf5.h>

#include <string>

namespace btm::h5::detail {

// A new file-access property list with the driver set (HDF5 1.10, whose driver interface
// it is written against), or with HDF5's default driver (other versions). The caller closes it.
hid_t write_driver_fapl();

// The system's reason ("No space left on device") for the first failed open, write,
// truncate or close of the file opened as `path`; "" when there was none. Forgets it.
std::string take_write_error(const std::string& path);

}  // namespace btm::h5::detail
