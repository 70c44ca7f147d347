#include "tools/cli.h"

int main(int argc, char** argv) { return fedsim::cli_main(argc, argv); }
