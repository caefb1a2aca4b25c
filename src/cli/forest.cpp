// Placeholder until `btm forest` lands.
#include "btm/error.hpp"
#include "cli/commands.hpp"
namespace btm {
int command_forest(const std::vector<std::string>&) { throw Error("forest pending"); }
}
