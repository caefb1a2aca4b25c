#include "btm/forest.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "btm/error.hpp"
#include "btm/h5.hpp"

namespace btm {

namespace {

std::filesystem::path records_dir(const std::filesystem::path& forest_file) {
  return forest_file.string() + ".d";
}

// The registration records of a forest, in name order (temporary files of writers excluded).
std::vector<std::filesystem::path> record_files(const std::filesystem::path& forest_file) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(records_dir(forest_file), ec)) {
    if (e.path().extension() == ".h5") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Forest Forest::load(const std::filesystem::path& path) {
  Forest forest = load_manifest(path);
  for (const auto& record : record_files(path)) {
    for (const auto& e : load_manifest(record).experts_) forest.add(e);
  }
  return forest;
}

bool Forest::exists(const std::filesystem::path& path) {
  return std::filesystem::exists(path) || !record_files(path).empty();
}

void Forest::register_entry(const std::filesystem::path& path, const ForestEntry& entry) {
  if (entry.name.empty() || entry.name.find('/') != std::string::npos) {
    throw Error("cannot register an expert named '" + entry.name + "' in " + path.string());
  }
  Forest record;
  record.experts_.push_back(entry);
  record.save(records_dir(path) / (entry.name + ".h5"));
}

Forest Forest::load_manifest(const std::filesystem::path& path) {
  Forest forest;
  forest.path_ = path;
  if (!std::filesystem::exists(path)) return forest;
  h5::File f = h5::open_for_read(path, "a forest manifest (forest.h5)");
  if (!f.exists("/experts/name")) throw Error(path.string() + ": not a forest manifest (no /experts/name)");
  const auto names = f.read_strings("/experts/name");
  const auto domains = f.read_strings("/experts/domain");
  const auto parents = f.read_strings("/experts/parent");
  const auto files = f.read_strings("/experts/file");
  const auto archs = f.read_strings("/experts/architecture");
  const auto tokens = f.read<std::uint64_t>("/experts/tokens");
  const std::size_t n = names.size();
  if (domains.size() != n || parents.size() != n || files.size() != n || archs.size() != n || tokens.size() != n) {
    throw Error(path.string() + ": /experts datasets have different lengths");
  }
  for (std::size_t i = 0; i < n; ++i) {
    forest.experts_.push_back({names[i], domains[i], parents[i], files[i], archs[i], tokens[i]});
  }
  return forest;
}

void Forest::save(const std::filesystem::path& path) const {
  std::vector<std::string> names, domains, parents, files, archs;
  std::vector<std::uint64_t> tokens;
  for (const auto& e : experts_) {
    names.push_back(e.name);
    domains.push_back(e.domain);
    parents.push_back(e.parent);
    files.push_back(e.file);
    archs.push_back(e.architecture);
    tokens.push_back(e.tokens);
  }
  h5::AtomicWrite w(path);
  h5::File& f = w.file();
  f.write_strings("/experts/name", names);
  f.write_strings("/experts/domain", domains);
  f.write_strings("/experts/parent", parents);
  f.write_strings("/experts/file", files);
  f.write_strings("/experts/architecture", archs);
  f.write<std::uint64_t>("/experts/tokens", tokens);
  f.set_attr<std::int64_t>("/experts", "count", static_cast<std::int64_t>(experts_.size()));
  f.set_attr("/", "version", std::string(BTM_VERSION));
  w.commit();
}

Forest Forest::update(const std::filesystem::path& path, const std::function<void(Forest&)>& change) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const std::string lock_path = path.string() + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0) throw Error("cannot open the lock file " + lock_path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("cannot lock " + lock_path + ": " + why);
  }
  try {
    const std::vector<std::filesystem::path> merged = record_files(path);
    Forest forest = load(path);
    change(forest);
    forest.save(path);
    // Now in the manifest: a record left behind would undo a removal or replacement.
    for (const auto& record : merged) std::filesystem::remove(record);
    ::close(fd);  // releases the lock
    return forest;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

std::vector<std::string> Forest::names() const {
  std::vector<std::string> out;
  for (const auto& e : experts_) out.push_back(e.name);
  return out;
}

const ForestEntry* Forest::find(const std::string& name) const {
  for (const auto& e : experts_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string Forest::architecture() const { return experts_.empty() ? "" : experts_.front().architecture; }

void Forest::add(const ForestEntry& entry) {
  if (entry.name.empty()) throw Error("a forest expert needs a name");
  for (const auto& e : experts_) {
    if (e.name != entry.name && e.architecture != entry.architecture) {
      throw Error("expert '" + entry.name + "' has architecture " + entry.architecture + ", but the forest's experts have " +
                  e.architecture + " (e.g. '" + e.name + "'); experts of one forest must share an architecture");
    }
  }
  auto it = std::find_if(experts_.begin(), experts_.end(), [&](const auto& e) { return e.name == entry.name; });
  if (it != experts_.end()) *it = entry;
  else experts_.push_back(entry);
}

void Forest::remove(const std::string& name) {
  auto it = std::find_if(experts_.begin(), experts_.end(), [&](const auto& e) { return e.name == name; });
  if (it == experts_.end()) {
    std::string known;
    for (const auto& e : experts_) known += (known.empty() ? "" : ", ") + e.name;
    throw Error("no expert named '" + name + "' in the forest (experts: " + (known.empty() ? "none" : known) + ")");
  }
  experts_.erase(it);
}

void Forest::order_as(const std::vector<std::string>& names) {
  std::vector<ForestEntry> out;
  for (const auto& e : experts_) {
    if (std::find(names.begin(), names.end(), e.name) == names.end()) out.push_back(e);
  }
  for (const auto& n : names) {
    if (const ForestEntry* e = find(n)) out.push_back(*e);
  }
  experts_ = std::move(out);
}

std::filesystem::path Forest::resolve(const ForestEntry& entry) const {
  std::filesystem::path p(entry.file);
  return p.is_absolute() ? p : path_.parent_path() / p;
}

}  // namespace btm
