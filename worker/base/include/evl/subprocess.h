// Running a helper program (sbatch, scontrol, the PyAV baseline) and reading what it prints.
#pragma once

#include <string>
#include <vector>

namespace evl {

// Runs argv[0] (searched in PATH) with stdout+stderr captured; returns the exit status (127 when it
// cannot be started, 128+N when killed by signal N).
int RunCaptured(const std::vector<std::string>& argv, std::string* output);

}  // namespace evl
