// `btm inspect FILE.h5 ...`: prints a summary of each file (btm/inspect.hpp) on rank 0.
#include <iostream>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/inspect.hpp"
#include "cli/commands.hpp"

namespace btm {

int command_inspect(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: btm inspect FILE.h5 [FILE.h5 ...]\n"
                 "  Summarises btm HDF5 files: data.h5 (tokenizer, domains x splits), model files\n"
                 "  (config, parameters, training state, last metrics), forest.h5, eval.h5,\n"
                 "  clusters.h5; any other HDF5 file as a tree of groups, datasets and attributes.\n";
    return args.empty() ? 2 : 0;
  }
  for (const auto& a : args) {
    if (a.rfind("--", 0) == 0) throw Error("btm inspect: unknown option " + a + " (usage: btm inspect FILE.h5 ...)");
  }
  if (!Comm::world().is_root()) return 0;  // one rank prints
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (i) std::cout << "\n";
    inspect_file(args[i], std::cout);
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace btm
