#pragma once
// The `btm` command line: run, check, inspect, sample, forest, --help, --version.
namespace btm {
int run_cli(int argc, char** argv);
}
