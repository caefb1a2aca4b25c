// Placeholder until `btm inspect` lands.
#include "btm/error.hpp"
#include "cli/commands.hpp"
namespace btm {
int command_inspect(const std::vector<std::string>&) { throw Error("inspect pending"); }
}
