// Placeholder until the data concern lands.
#include "btm/error.hpp"
#include "btm/phases.hpp"
#include "cli/commands.hpp"
namespace btm {
void run_prepare(const Deck&, const Comm&) { throw Error("prepare pending"); }
int command_inspect(const std::vector<std::string>&) { throw Error("inspect pending"); }
}
