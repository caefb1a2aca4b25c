// Placeholder until `btm sample` lands.
#include "btm/error.hpp"
#include "cli/commands.hpp"
namespace btm {
int command_sample(const std::vector<std::string>&) { throw Error("sample pending"); }
}
