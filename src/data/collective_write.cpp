#include "data/collective_write.hpp"

#include "btm/error.hpp"
#include "btm/fault_hook.hpp"

namespace btm {

void write_collective_1d(h5::File& file, const std::string& dataset_path, hid_t file_type, hid_t mem_type,
                         hsize_t total, hsize_t offset, hsize_t count, const void* data) {
  if (offset + count > total) {
    throw Error(file.where(dataset_path) + ": part [" + std::to_string(offset) + ", " +
                std::to_string(offset + count) + ") is outside the dataset (" + std::to_string(total) + ")");
  }
  auto slash = dataset_path.rfind('/');
  if (slash != 0 && slash != std::string::npos) file.create_group(dataset_path.substr(0, slash));
  h5::Handle space(H5Screate_simple(1, &total, nullptr));
  BTM_H5(space.get());
  h5::Handle dset(H5Dcreate2(file.id(), dataset_path.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT));
  if (dset.get() < 0) throw Error(file.where(dataset_path) + ": cannot create dataset");
  h5::Handle mem(H5Screate_simple(1, &count, nullptr));
  BTM_H5(mem.get());
  if (count > 0) {
    BTM_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr));
  } else {
    // A rank without a part still takes part in the collective write.
    BTM_H5(H5Sselect_none(space.get()));
    BTM_H5(H5Sselect_none(mem.get()));
  }
  h5::Handle xfer(H5Pcreate(H5P_DATASET_XFER));
  BTM_H5(xfer.get());
  BTM_H5(H5Pset_dxpl_mpio(xfer.get(), H5FD_MPIO_COLLECTIVE));
  fault::before_dataset_write(file, count * H5Tget_size(mem_type), /*flush_first=*/false);
  static const std::uint64_t nothing = 0;  // HDF5 wants a buffer even for an empty part
  BTM_H5(H5Dwrite(dset.get(), mem_type, mem.get(), space.get(), xfer.get(), data ? data : &nothing));
}

}  // namespace btm
