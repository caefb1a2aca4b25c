#include "btm/forest.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "btm/error.hpp"
#include "btm/h5.hpp"

namespace btm {

namespace {

std::filesystem::path records_dir(const std::filesystem::path& forest_file) {
  return forest_file.string() + ".d";
}

std::filesystem::path failures_dir(const std::filesystem::path& forest_file) {
  return records_dir(forest_file) / "failed";
}

// The .h5 files of a records folder, in name order (temporary files of writers excluded).
std::vector<std::filesystem::path> h5_files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".h5" && e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The registration records of a forest.
std::vector<std::filesystem::path> record_files(const std::filesystem::path& forest_file) {
  return h5_files_in(records_dir(forest_file));
}

void check_record_name(const std::filesystem::path& path, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) {
    throw Error("cannot register an expert named '" + name + "' in " + path.string());
  }
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<ForestFailure> read_failures(const h5::File& f) {
  std::vector<ForestFailure> out;
  if (!f.exists("/failed/name")) return out;
  const auto names = f.read_strings("/failed/name");
  const auto reasons = f.read_strings("/failed/reason");
  const auto times = f.read_strings("/failed/time");
  if (reasons.size() != names.size() || times.size() != names.size()) {
    throw Error(f.path().string() + ": /failed datasets have different lengths");
  }
  for (std::size_t i = 0; i < names.size(); ++i) out.push_back({names[i], reasons[i], times[i]});
  return out;
}

void write_failures(h5::File& f, const std::vector<ForestFailure>& failures) {
  std::vector<std::string> names, reasons, times;
  for (const auto& x : failures) {
    names.push_back(x.name);
    reasons.push_back(x.reason);
    times.push_back(x.time);
  }
  f.write_strings("/failed/name", names);
  f.write_strings("/failed/reason", reasons);
  f.write_strings("/failed/time", times);
}

}  // namespace

Forest Forest::load(const std::filesystem::path& path) {
  Forest forest = load_manifest(path);
  for (const auto& record : record_files(path)) {
    for (const auto& e : load_manifest(record).experts_) forest.add(e);
  }
  for (const auto& record : h5_files_in(failures_dir(path))) {
    for (const auto& x : read_failures(h5::open_for_read(record, "a failure record of " + path.string()))) {
      std::erase_if(forest.failures_, [&](const ForestFailure& y) { return y.name == x.name; });
      forest.failures_.push_back(x);
    }
  }
  // A finished expert is not failed, whatever an older record says.
  std::erase_if(forest.failures_, [&](const ForestFailure& x) { return forest.find(x.name) != nullptr; });
  return forest;
}

bool Forest::exists(const std::filesystem::path& path) {
  return std::filesystem::exists(path) || !record_files(path).empty() || !h5_files_in(failures_dir(path)).empty();
}

void Forest::register_entry(const std::filesystem::path& path, const ForestEntry& entry) {
  check_record_name(path, entry.name);
  Forest record;
  record.experts_.push_back(entry);
  record.save(records_dir(path) / (entry.name + ".h5"));
  std::error_code ec;
  std::filesystem::remove(failures_dir(path) / (entry.name + ".h5"), ec);
}

void Forest::register_failure(const std::filesystem::path& path, ForestFailure failure) {
  check_record_name(path, failure.name);
  if (failure.time.empty()) failure.time = utc_now();
  h5::AtomicWrite w(failures_dir(path) / (failure.name + ".h5"));
  write_failures(w.file(), {failure});
  w.file().set_attr("/", "version", std::string(BTM_VERSION));
  w.commit();
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
  forest.failures_ = read_failures(f);
  return forest;
}

void Forest::save(const std::filesystem::path& path) const {
  // A manifest that already lists these rows stays untouched: phases that only read the
  // forest (average, eval) rewrite nothing, and a run that stops early changes no file.
  if (std::filesystem::exists(path)) {
    try {
      if (load_manifest(path).experts_ == experts_) return;
    } catch (const Error&) {
      // an unreadable manifest is replaced
    }
  }
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
  if (!failures_.empty()) write_failures(f, failures_);
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
      throw Error("expert '" + entry.name + "' (" + entry.file + ") has architecture " + entry.architecture + ", but the " +
                  "experts of " + (path_.empty() ? std::string("the forest") : path_.string()) + " have " + e.architecture +
                  " (e.g. '" + e.name + "'); experts of one forest must share an architecture");
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
