// Everything about a job that can be checked before it starts, checked at once: `evl train`, `eval`,
// `predict`, `config --check` and `submit` run this first, so that a mistake costs seconds instead
// of a queue wait and the first 5000 steps. Each problem is one line naming the field and, where
// there is one, the file and line.
//
// What it reads: the config, the list files (every line: paths are not opened, labels must be below
// model.num_classes; kExistence: only that they exist), the class map. What it does not: open videos
// (`evl data probe` does) or weights beyond their existence.
#pragma once

#include <string>
#include <vector>

#include "evl_config.pb.h"

namespace evl {

enum class PreflightFor { kTrain, kEval, kPredict, kConfig };

// How much of the lists to read. The ranks of a multi-rank job check only that the lists exist:
// `evl launch` and `evl submit` have read them once already, and in the job rank 0 reads them for
// everyone (evl/dataset_lists.h) — hundreds of ranks do not each read a Kinetics list.
enum class ListCheck { kEveryLine, kExistence };

// `world`: the job's ranks (0: unknown, the batch split is not checked). Empty: nothing found.
std::vector<std::string> PreflightProblems(const EvlConfig& config, PreflightFor what, int world,
                                           ListCheck lists = ListCheck::kEveryLine);

// The problems as one message for an exception or the console: a count, then one per line.
std::string PreflightReport(const std::vector<std::string>& problems);

}  // namespace evl
