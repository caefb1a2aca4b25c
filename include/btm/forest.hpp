#pragma once
// The ELM forest manifest, forest.h5 (ARCHITECTURE, Files): one row per expert in parallel
// datasets under /experts: name, domain, parent, file (relative to forest.h5's folder
// unless absolute), architecture (ModelConfig::architecture_hash) as strings, and tokens
// (uint64). Every expert of a forest shares one architecture.
//
// Expert training registers each finished expert in a record of its own,
// "<forest.h5>.d/<name>.h5" (a one-row manifest written by atomic rename), so separate jobs
// finishing together need no file locks; load() merges the records into the manifest.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace btm {

struct ForestEntry {
  std::string name;
  std::string domain;  // domain or cluster the expert was trained on
  std::string parent;  // what it was branched from
  std::string file;    // as stored (relative to the forest's folder unless absolute)
  std::string architecture;
  std::uint64_t tokens = 0;  // training tokens of the expert phase
};

class Forest {
 public:
  // The manifest at `path` (empty when it does not exist yet) with the registration records
  // merged in after its rows (records in name order; a record replaces a row of its name).
  static Forest load(const std::filesystem::path& path);
  // Whether there is a forest at `path`: the manifest or a registration record.
  static bool exists(const std::filesystem::path& path);
  // Writes the manifest (atomic); the records stay, so concurrent writers lose nothing.
  void save(const std::filesystem::path& path) const;
  // Registers one expert: writes its record atomically, without locks or a read of the
  // manifest (one Slurm array task per expert may finish at the same time as another).
  static void register_entry(const std::filesystem::path& path, const ForestEntry& entry);
  // Load, modify, save and drop the merged records, under an exclusive lock on
  // "<path>.lock": for edits of the forest by hand (btm forest add/remove).
  static Forest update(const std::filesystem::path& path, const std::function<void(Forest&)>& change);

  const std::vector<ForestEntry>& experts() const { return experts_; }
  // The experts' names, in order, by value: `Forest::load(p).names()` is safe in a range-for,
  // where `Forest::load(p).experts()` would refer into a destroyed temporary.
  std::vector<std::string> names() const;
  const ForestEntry* find(const std::string& name) const;
  // Adds or replaces (same name) an entry; refuses an architecture different from the rest.
  void add(const ForestEntry& entry);
  void remove(const std::string& name);  // throws when absent
  // Puts the entries named in `names` last, in that order (others keep theirs): groups
  // register experts as they finish, the manifest ends up in the deck's order.
  void order_as(const std::vector<std::string>& names);
  std::string architecture() const;      // "" when empty
  const std::filesystem::path& path() const { return path_; }
  // The entry's model file as a path usable from the working directory.
  std::filesystem::path resolve(const ForestEntry& entry) const;

 private:
  static Forest load_manifest(const std::filesystem::path& path);  // one file, no records
  std::filesystem::path path_;  // forest.h5
  std::vector<ForestEntry> experts_;
};

}  // namespace btm
