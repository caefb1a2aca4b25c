// Placeholder until the training phases land.
#include "btm/error.hpp"
#include "btm/phases.hpp"
#include "cli/commands.hpp"
namespace btm {
void run_phases(const Deck&, const std::vector<std::string>&, const Comm&) { throw Error("phases pending"); }
int command_sample(const std::vector<std::string>&) { throw Error("sample pending"); }
int command_forest(const std::vector<std::string>&) { throw Error("forest pending"); }
}
