// The `fedsim` command line: run, validate, list, sweep, tune, bench (CLI11).
#pragma once

namespace fedsim {
// Returns the process exit code: 0 success, 2 bad input, 1 internal error.
int cli_main(int argc, char** argv);
}  // namespace fedsim
