// Command-line entry: parses the command, brings up MPI + Kokkos, and turns every error
// into one message and a stop of all ranks.
#include "btm/cli.hpp"

#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "btm/collective_error.hpp"
#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/error.hpp"
#include "btm/forest.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"
#include "btm/plan.hpp"
#include "btm/runtime.hpp"
#include "cli/commands.hpp"

namespace btm {

namespace {

const char* kUsage = R"(btm — Branch-Train-Merge expert language models on MPI

usage:
  btm run DECK [--phases a,b,...] [--set section.key=value ...]
      Run the deck's phases (prepare, seed, experts, baseline, average, eval).
      Finished phases are skipped; interrupted ones resume from their checkpoint.
      SIGUSR1/SIGTERM checkpoint and stop at the next step (exit status 75).
      Experts that failed (recorded in forest.h5) end the run with exit status 3
      once the others are done; the same command then trains only those.
  btm check DECK [--ranks P] [--set section.key=value ...]
      Validate the deck and print the plan: phases, expert groups, which ranks
      train which expert, token budgets. P defaults to the MPI world size.
  btm inspect FILE.h5
      Summarise any btm HDF5 file (data, model, forest, eval).
  btm sample MODEL.h5 [--prompt TEXT] [--tokens N] [--temperature T] [--top-p P] [--seed S]
      Generate text from a model file with a KV cache.
  btm forest list|add|remove ...
      Manage the ELM forest manifest (see `btm forest --help`).
  btm export MODEL.h5 DIR [--dtype fp32|bf16|fp16] [--shard-size SIZE]
      Write a Hugging Face checkpoint folder: LlamaForCausalLM, or MixtralForCausalLM
      for MoE models (config.json, safetensors, SentencePiece tokenizer).
  btm import HF_DIR OUT.h5 [--context N]
      Read a Llama or Mixtral checkpoint folder (with tokenizer.model) into a
      finished btm model file, e.g. for [seed] init.
  btm --help | --version
)";

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Options shared by `run` and `check`.
struct DeckArgs {
  std::string deck;
  std::vector<std::string> overrides;
  std::vector<std::string> phases;
  bool phases_given = false;  // --phases was passed (an empty list is then an error)
  int ranks = 0;
};

DeckArgs parse_deck_args(const std::string& command, const std::vector<std::string>& args) {
  DeckArgs out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= args.size()) throw Error("btm " + command + ": " + flag + " needs a value");
      return args[++i];
    };
    if (a == "--set") out.overrides.push_back(value(a));
    else if (a.rfind("--set=", 0) == 0) out.overrides.push_back(a.substr(6));
    else if ((a == "--phases" || a.rfind("--phases=", 0) == 0) && command == "run") {
      out.phases = split_commas(a == "--phases" ? value(a) : a.substr(9));
      out.phases_given = true;
    }
    else if (a == "--ranks" && command == "check") {
      const std::string v = value(a);
      try {
        std::size_t used = 0;
        out.ranks = std::stoi(v, &used);
        if (used != v.size() || out.ranks < 1) throw std::invalid_argument(v);
      } catch (const std::exception&) {
        throw Error("btm check: --ranks expects a positive integer, got '" + v + "'");
      }
    }
    else if (a.rfind("--", 0) == 0) throw Error("btm " + command + ": unknown option " + a + "\n" + kUsage);
    else if (out.deck.empty()) out.deck = a;
    else throw Error("btm " + command + ": unexpected argument '" + a + "'");
  }
  if (out.deck.empty()) throw Error("btm " + command + ": missing the deck file\n" + kUsage);
  return out;
}

int command_run(const std::vector<std::string>& args) {
  DeckArgs a = parse_deck_args("run", args);
  Deck deck = load_deck(a.deck, a.overrides);
  const std::vector<std::string> phases = a.phases_given ? a.phases : deck.run.phases;
  if (phases.empty()) {
    throw Error(a.phases_given ? "btm run: --phases names no phase; expected a comma-separated list, e.g. --phases seed,experts"
                               : "btm run: " + a.deck + ": run.phases is empty: there is nothing to run");
  }
  check_phase_names(phases);
  // Before any work: an output folder that cannot be made would otherwise fail a phase late.
  std::error_code ec;
  std::filesystem::create_directories(deck.run.out_dir, ec);
  if (ec || !std::filesystem::is_directory(deck.run.out_dir)) {
    throw Error("run.out_dir: cannot create the output folder " + deck.run.out_dir.string() + " (" +
                (ec ? ec.message() : "a file of that name exists") + ")");
  }
  Comm world = Comm::world();
  log_root("# btm " BTM_VERSION " run " + a.deck + " on " + std::to_string(world.size()) + " rank(s)");
  log_root("# resolved deck:\n" + to_toml(deck));
  bool finished = false;
  try {
    finished = run_phases(deck, phases, world);
  } catch (const ModelsFailed& e) {
    // Every rank is here together: a clean exit, no MPI_Abort.
    if (world.is_root()) write_stderr(std::string("btm: error: ") + e.what() + "\n");
    return 3;
  }
  // EX_TEMPFAIL: a stop signal interrupted training; the same command resumes it.
  return finished ? 0 : 75;
}

int command_check(const std::vector<std::string>& args) {
  DeckArgs a = parse_deck_args("check", args);
  Deck deck = load_deck(a.deck, a.overrides);
  Comm world = Comm::world();
  if (world.is_root()) {
    // The experts already in the forest: the compute-matched baseline counts them, eval runs them.
    std::vector<std::string> in_forest;
    if (Forest::exists(deck.forest_file())) {
      const Forest forest = Forest::load(deck.forest_file());
      for (const auto& e : forest.experts()) in_forest.push_back(e.name);
    }
    print_plan(deck, a.ranks > 0 ? a.ranks : world.size(), std::cout, in_forest);
  }
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "btm " BTM_VERSION "\n";
    return 0;
  }
  Runtime runtime(argc, argv);
  try {
    const std::string command = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    const bool help = !rest.empty() && (rest[0] == "--help" || rest[0] == "-h");
    if (help && command != "forest") {
      if (Comm::world().is_root()) std::cout << kUsage;
      return 0;
    }
    if (command == "run") return command_run(rest);
    if (command == "check") return command_check(rest);
    if (command == "inspect") return command_inspect(rest);
    if (command == "sample") return command_sample(rest);
    if (command == "forest") return command_forest(rest);
    if (command == "export") return command_export(rest);
    if (command == "import") return command_import(rest);
    throw Error("unknown command '" + command + "'\n" + kUsage);
  } catch (const std::exception& e) {
    abort_all(e.what());
  }
}

}  // namespace btm
