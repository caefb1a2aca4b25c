// `btm forest list|add|remove`: manage forest.h5, e.g. to add an expert trained by a
// separate job (a Slurm array task) or to drop one.
#include <iomanip>
#include <iostream>

#include "btm/error.hpp"
#include "btm/expert_training.hpp"
#include "btm/forest.hpp"
#include "cli/commands.hpp"

namespace btm {

namespace {

const char* kForestUsage = R"(usage:
  btm forest list FOREST.h5
  btm forest add FOREST.h5 MODEL.h5 [--name NAME] [--domain DOMAIN] [--replace]
      Register a finished expert model file (its architecture and tokenizer must match
      the forest's). An existing expert of the same name is replaced only with --replace.
  btm forest remove FOREST.h5 NAME
      Drop an expert from the manifest (its model file is left in place).
)";

// Experts whose training failed, after the table: what failed, when, and why.
void print_failures(const Forest& forest, std::ostream& out) {
  for (const auto& f : forest.failures()) out << "failed: " << f.name << " at " << f.time << ": " << f.reason << "\n";
}

void print_forest(const Forest& forest, std::ostream& out) {
  if (forest.experts().empty()) {
    out << "(empty forest)\n";
    print_failures(forest, out);
    return;
  }
  std::size_t wn = 4, wd = 6, wp = 6;
  for (const auto& e : forest.experts()) {
    wn = std::max(wn, e.name.size());
    wd = std::max(wd, e.domain.size());
    wp = std::max(wp, e.parent.size());
  }
  out << std::left << std::setw(wn + 2) << "name" << std::setw(wd + 2) << "domain" << std::setw(wp + 2) << "parent"
      << std::right << std::setw(14) << "tokens" << "  architecture      file\n";
  for (const auto& e : forest.experts()) {
    out << std::left << std::setw(wn + 2) << e.name << std::setw(wd + 2) << e.domain << std::setw(wp + 2) << e.parent
        << std::right << std::setw(14) << e.tokens << "  " << e.architecture << "  " << e.file << "\n";
  }
  print_failures(forest, out);
}

}  // namespace

int command_forest(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help") {
    std::cout << kForestUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string& verb = args[0];
  if (args.size() < 2) throw Error("btm forest " + verb + ": missing FOREST.h5\n" + kForestUsage);
  const std::filesystem::path forest_file = args[1];
  if (verb == "list") {
    if (!Forest::exists(forest_file)) throw Error("no such file: " + forest_file.string());
    print_forest(Forest::load(forest_file), std::cout);
    return 0;
  }
  if (verb == "add") {
    std::string model, name, domain;
    bool replace = false;
    for (std::size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "--replace") replace = true;
      else if (args[i] == "--name" && i + 1 < args.size()) name = args[++i];
      else if (args[i] == "--domain" && i + 1 < args.size()) domain = args[++i];
      else if (args[i].rfind("--", 0) == 0) throw Error("btm forest add: unknown option " + args[i] + "\n" + kForestUsage);
      else if (model.empty()) model = args[i];
      else throw Error("btm forest add: unexpected argument '" + args[i] + "'");
    }
    if (model.empty()) throw Error("btm forest add: missing MODEL.h5\n" + std::string(kForestUsage));
    const ForestEntry entry = add_expert_file(forest_file, model, name, domain, replace);
    std::cout << "added '" << entry.name << "' (" << entry.file << ") to " << forest_file.string() << "\n";
    return 0;
  }
  if (verb == "remove") {
    if (args.size() != 3) throw Error("btm forest remove: expected FOREST.h5 NAME\n" + std::string(kForestUsage));
    if (!Forest::exists(forest_file)) throw Error("no such file: " + forest_file.string());
    Forest::update(forest_file, [&](Forest& f) { f.remove(args[2]); });
    std::cout << "removed '" << args[2] << "' from " << forest_file.string() << "\n";
    return 0;
  }
  throw Error("btm forest: unknown action '" + verb + "'\n" + kForestUsage);
}

}  // namespace btm
