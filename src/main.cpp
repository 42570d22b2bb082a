#include "otad/cli/commands.hpp"

int main(int argc, char** argv) { return otad::cli::run(argc, argv); }
