#include "run_record.h"

#include <glog/logging.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <mutex>

#include "config.h"
#include "evl/file_util.h"
#include "evl/slurm.h"

namespace evl {

// Appends this rank's log lines to RUN_DIR/logs/rank<R>.log; a rank other than 0 opens its file
// at its first warning, so the directory shows at a glance which ranks had something to say.
class RankLogSink : public google::LogSink {
 public:
  RankLogSink(std::string path, bool everything) : path_(std::move(path)), everything_(everything) {
    if (everything_) out_.open(path_, std::ios::app);
  }
  void send(google::LogSeverity severity, const char*, const char* base_filename, int line,
            const google::LogMessageTime& time, const char* message, size_t message_len) override {
    if (!everything_ && severity < google::GLOG_WARNING) return;
    std::lock_guard<std::mutex> l(mu_);
    if (!out_.is_open()) out_.open(path_, std::ios::app);
    out_ << ToString(severity, base_filename, line, time, message, message_len) << std::endl;
  }

 private:
  const std::string path_;
  const bool everything_;
  std::mutex mu_;
  std::ofstream out_;
};

namespace {

std::string Now() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&t));
  return buf;
}

}  // namespace

RunRecord::RunRecord(const EvlConfig& config, const Topology& topo, const std::string& command,
                     const std::string& info, Communicator& comm) {
  const std::string dir = config.train().run_dir();
  if (topo.rank == 0) {
    MakeDirectories(dir + "/logs");
    const SlurmJobInfo job = SlurmJobFromEnv();
    const std::string who = "host " + topo.host + ", pid " + std::to_string(getpid()) + ", since " + Now() +
                            (job.in_job ? ", Slurm job " + job.job_id : "");
    lock_ = std::make_unique<RunDirLock>();
    refusal_ = lock_->Acquire(dir, who);
  }
  refusal_ = comm.BroadcastString(refusal_, 0, "run directory lock");
  if (!refusal_.empty()) return;
  if (topo.rank == 0) {
    WriteFileAtomically(dir + "/config.pbtxt", ConfigToText(config));
    WriteFileAtomically(dir + "/info.txt", info);
    std::ofstream(dir + "/commands.txt", std::ios::app)
        << Now() << "  " << topo.world << " rank(s) on " << topo.host << ": " << command << "\n";
  }
  comm.BroadcastString("", 0, "run directory ready");  // the others' logs/ exists now
  sink_ = std::make_unique<RankLogSink>(dir + "/logs/rank" + std::to_string(topo.rank) + ".log", topo.rank == 0);
  google::AddLogSink(sink_.get());
}

RunRecord::~RunRecord() {
  if (sink_) google::RemoveLogSink(sink_.get());
}

}  // namespace evl
