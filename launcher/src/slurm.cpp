#include "evl/slurm.h"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <stdexcept>

#include "evl/stop_signal.h"

namespace evl {

std::string RenderTemplate(const std::string& text, const std::map<std::string, std::string>& values,
                           const std::string& template_name) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find("{{", pos);
    if (open == std::string::npos) break;
    const size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) break;
    const std::string name = text.substr(open + 2, close - open - 2);
    const auto it = values.find(name);
    if (it == values.end()) {
      const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + open, '\n'));
      throw std::invalid_argument(template_name + ":" + std::to_string(line) + ": unknown placeholder {{" + name + "}}");
    }
    out.append(text, pos, open - pos);
    out += it->second;
    pos = close + 2;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string ParseSbatchJobId(const std::string& output) {
  // --parsable prints "<id>[;<cluster>]" on the last line; warnings may come before it.
  size_t end = output.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) throw std::runtime_error("sbatch printed no job id");
  const size_t begin = output.find_last_of('\n', end);
  const size_t first = begin == std::string::npos ? 0 : begin + 1;
  std::string line = output.substr(first, end + 1 - first);
  line = line.substr(0, line.find(';'));
  if (line.empty() || !std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isdigit(c); }))
    throw std::runtime_error("sbatch printed no job id: " + output);
  return line;
}

SlurmJobInfo SlurmJobFromEnv() {
  SlurmJobInfo job;
  if (const char* id = std::getenv("SLURM_JOB_ID")) {
    job.in_job = true;
    job.job_id = id;
  }
  if (const char* n = std::getenv("SLURM_RESTART_COUNT")) job.restart_count = std::atoi(n);
  return job;
}

std::string RequeueRefusal(const SlurmJobInfo& job, int max_requeues) {
  if (!job.in_job) return "not a Slurm job";
  if (job.restart_count >= max_requeues)
    return "the job was requeued " + std::to_string(job.restart_count) + " time(s) already (slurm.max_requeues " +
           std::to_string(max_requeues) + ")";
  return "";
}

bool RequeueAfterStop(int status) { return status == kExitPreempted && LastStopSignal() == SIGUSR1; }

bool RequeueSucceeded(int status, const std::string& output) {
  return status == 0 || status == 128 + 15 || output.find("Job is pending execution") != std::string::npos;
}

}  // namespace evl
