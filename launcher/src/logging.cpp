#include "evl/logging.h"

#include <glog/logging.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace evl {
namespace {

int g_rank = 0;
int g_world = 1;

int EnvInt(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names)
    if (const char* v = std::getenv(n)) return std::atoi(v);
  return fallback;
}

void Prefix(std::ostream& s, const google::LogMessageInfo& l, void*) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%c%02d%02d %02d:%02d:%02d.%03d", l.severity[0], 1 + l.time.month(),
                l.time.day(), l.time.hour(), l.time.min(), l.time.sec(), l.time.usec() / 1000);
  s << buf;
  if (g_world > 1) s << " r" << g_rank << "/" << g_world;
  s << " " << l.filename << ":" << l.line_number << "]";
}

}  // namespace

void InitLogging(const char* argv0) {
  g_rank = EnvInt({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}, 0);
  g_world = EnvInt({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}, 1);
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  google::InitGoogleLogging(argv0, &Prefix, nullptr);
}

int LogRank() { return g_rank; }
int LogWorld() { return g_world; }

}  // namespace evl
