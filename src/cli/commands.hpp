#pragma once
// The sub-commands besides run and check; each takes the arguments after its name.
#include <string>
#include <vector>

namespace btm {
int command_inspect(const std::vector<std::string>& args);
int command_sample(const std::vector<std::string>& args);
int command_forest(const std::vector<std::string>& args);
int command_export(const std::vector<std::string>& args);
int command_import(const std::vector<std::string>& args);
}  // namespace btm
