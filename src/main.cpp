#include "btm/cli.hpp"

int main(int argc, char** argv) { return btm::run_cli(argc, argv); }
