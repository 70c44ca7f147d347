// Child processes for the study runner: start, wait, and this executable's path.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace fedsim {

// Starts argv (argv[0] looked up in PATH when it has no '/'), its stdout and
// stderr appended to `log_file`, or inherited when it is "". The child stays in
// this process's group, so that killing the group stops the whole study.
// Throws std::runtime_error when it cannot start.
pid_t start_process(const std::vector<std::string>& argv, const std::string& log_file = "");

// Waits for any child started by start_process; returns its pid and sets
// *exit_code (the exit status, or 128 + the signal that killed it).
pid_t wait_any_process(int* exit_code);

// Runs argv to completion; returns its exit code as wait_any_process does.
int run_process(const std::vector<std::string>& argv, const std::string& log_file = "");

// The absolute path of the running executable (/proc/self/exe).
std::string self_executable();

// The last `max_lines` lines of a text file ("" when it cannot be read).
std::string file_tail(const std::string& file, std::size_t max_lines);

}  // namespace fedsim
