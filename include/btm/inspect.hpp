#pragma once
// `btm inspect FILE.h5`: a readable summary of any btm HDF5 file (data, model, forest,
// clusters, eval), recognised by its layout; an unknown file gets a generic tree listing.
#include <filesystem>
#include <ostream>

namespace btm {
void inspect_file(const std::filesystem::path& path, std::ostream& out);
}
