// `evl submit`: renders the sbatch script for a training (or evaluation) job from the template,
// writes it and the effective config into RUN_DIR/slurm/, and submits it with sbatch.
#include <CLI/CLI.hpp>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "commands.h"
#include "evl/file_util.h"
#include "evl/runtime_info.h"
#include "evl/nccl_info.h"
#include "config.h"
#include "evl/checkpoint_manager.h"
#include "evl/slurm.h"
#include "evl/subprocess.h"
#include "slurm_template.h"

namespace evl {
namespace {

struct SubmitOptions {
  int nodes = 1;
  int gpus_per_node = 0;
  int tasks_per_node = 0;  // 0: one per GPU, or 1 without GPUs
  int cpus_per_task = 0;
  std::string time, partition, account, qos, constraint, mem, job_name, dependency;
  int signal_seconds = -1;  // -1: slurm.signal_seconds of the config
  int max_requeues = -1;    // -1: slurm.max_requeues of the config
  std::string template_path;  // empty: the embedded slurm/evl.sbatch.in
  bool dry_run = false;
  bool eval = false;        // submit `evl eval` instead of `evl train`
  bool then_eval = false;   // submit training and an evaluation that starts after it succeeds
  std::string checkpoint;   // evl eval --checkpoint (default: the run's newest valid checkpoint)
  std::vector<std::string> sbatch_args;  // after --
};

std::string Cwd() {
  char buf[4096];
  if (!getcwd(buf, sizeof buf)) throw std::runtime_error("evl submit: cannot read the working directory");
  return buf;
}

std::string Absolute(const std::string& path) { return path.empty() || path[0] == '/' ? path : Cwd() + "/" + path; }

// Single-quotes a word for bash unless it is plainly safe.
std::string ShellWord(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+./=:,@%") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string ReadTemplate(const std::string& path) {
  if (path.empty()) return kSbatchTemplate;
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--template: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text, bool executable) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out.flush()) throw std::runtime_error("evl submit: cannot write " + path);
  }
  if (executable) chmod(tmp.c_str(), 0755);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("evl submit: cannot write " + path);
}

struct Job {
  std::string kind;  // "train" | "eval"
  std::string script_path, config_path, log_pattern;
  std::string script;
};

// `#SBATCH` lines from the extra arguments after --, keeping "--flag value" pairs on one line.
std::string ExtraSbatchLines(const std::vector<std::string>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("-", 0) != 0)
      throw std::invalid_argument("evl submit: extra sbatch argument '" + args[i] + "' is not an option");
    out += "#SBATCH " + args[i];
    if (args[i].find('=') == std::string::npos && i + 1 < args.size() && args[i + 1].rfind("-", 0) != 0)
      out += "=" + args[++i];
    out += "\n";
  }
  return out;
}

Job Render(const EvlConfig& config, const SubmitOptions& o, const std::string& kind, const std::string& stamp,
           const std::string& self, const std::string& dependency) {
  const std::string run_dir = Absolute(config.train().run_dir());
  Job job;
  job.kind = kind;
  const std::string base = run_dir + "/slurm/" + kind + "-" + stamp;
  job.script_path = base + ".sbatch";
  job.config_path = base + ".pbtxt";
  job.log_pattern = run_dir + "/slurm/" + kind + "-%j.out";
  const int tasks = o.tasks_per_node > 0 ? o.tasks_per_node : std::max(1, o.gpus_per_node);
  if (o.gpus_per_node > 0 && tasks != o.gpus_per_node)
    LOG(WARNING) << "--tasks-per-node " << tasks << " with --gpus-per-node " << o.gpus_per_node
                 << ": evl expects one task per GPU";
  std::string sb;
  auto line = [&sb](const std::string& flag, const std::string& value) {
    // sbatch reads directives itself, not through the shell: no quoting, and no spaces to split.
    if (value.find_first_of(" \t\n'\"") != std::string::npos)
      throw std::invalid_argument("evl submit: --" + flag + " '" + value + "' contains spaces or quotes");
    if (!value.empty()) sb += "#SBATCH --" + flag + "=" + value + "\n";
  };
  if (o.gpus_per_node > 0) line("gpus-per-node", std::to_string(o.gpus_per_node));
  if (o.cpus_per_task > 0) line("cpus-per-task", std::to_string(o.cpus_per_task));
  line("time", config.slurm().time());
  line("partition", config.slurm().partition());
  line("account", config.slurm().account());
  line("qos", config.slurm().qos());
  line("constraint", o.constraint);
  line("mem", o.mem);
  line("dependency", dependency);
  if (kind == "train") {
    // Slurm signals every rank this long before the time limit; they checkpoint and rank 0
    // requeues the job, which resumes from that checkpoint.
    if (config.slurm().signal_seconds() > 0) line("signal", "USR1@" + std::to_string(config.slurm().signal_seconds()));
    sb += "#SBATCH --requeue\n";
  }
  sb += ExtraSbatchLines(o.sbatch_args);
  if (!sb.empty() && sb.back() == '\n') sb.pop_back();

  std::string args = kind + " --config " + ShellWord(job.config_path);
  if (kind == "eval" && !o.checkpoint.empty()) args += " --checkpoint " + ShellWord(Absolute(o.checkpoint));
  char when[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  const std::string name = o.job_name.empty() ? "evl-" + kind : o.job_name + (o.then_eval && kind == "eval" ? "-eval" : "");
  job.script = RenderTemplate(ReadTemplate(o.template_path),
                              {{"COMMAND_NAME", kind},
                               {"RENDERED_AT", when},
                               {"SCRIPT", job.script_path},
                               {"JOB_NAME", name},
                               {"NODES", std::to_string(o.nodes)},
                               {"TASKS_PER_NODE", std::to_string(tasks)},
                               {"SBATCH_OPTIONS", sb},
                               {"LOG", job.log_pattern},
                               {"WORKDIR", Cwd()},
                               {"SRUN_OPTIONS", "--ntasks-per-node=" + std::to_string(tasks) + " "},
                               {"EVL", ShellWord(self)},
                               {"EVL_ARGS", args}},
                              o.template_path.empty() ? "slurm/evl.sbatch.in" : o.template_path);
  return job;
}

std::string Submit(const Job& job) {
  std::string out;
  const int rc = RunCaptured({"sbatch", "--parsable", job.script_path}, &out);
  if (rc == 127) throw std::runtime_error("evl submit: cannot run sbatch (is this a Slurm login node?)");
  if (rc != 0) throw std::runtime_error("evl submit: sbatch " + job.script_path + " failed (status " +
                                        std::to_string(rc) + "): " + out);
  return ParseSbatchJobId(out);
}

std::string LogFor(const Job& job, const std::string& id) {
  std::string log = job.log_pattern;
  return log.replace(log.find("%j"), 2, id);
}

int RunSubmit(const ConfigFlags& flags, const SubmitOptions& o, const std::string& self) {
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  if (o.nodes < 1) throw std::invalid_argument("--nodes must be at least 1");
  if (o.gpus_per_node < 0 || o.tasks_per_node < 0) throw std::invalid_argument("--gpus-per-node/--tasks-per-node must be >= 0");
  if (o.eval && o.then_eval) throw std::invalid_argument("evl submit: --eval and --then-eval exclude each other");
  // Refused here, not after the job has waited in the queue: every rank would refuse the GPUs.
  if (o.gpus_per_node > 0 && (!TorchBuiltWithCuda() || !NcclBuilt()))
    throw std::invalid_argument("evl submit --gpus-per-node " + std::to_string(o.gpus_per_node) + ": this evl was built " +
                                (!TorchBuiltWithCuda() ? "against a LibTorch without CUDA" : "without NCCL") +
                                " (see `evl info`); build it against a CUDA LibTorch (docs/building.md) or submit a "
                                "CPU job (--gpus-per-node 0)");
  auto* slurm = config.mutable_slurm();
  if (!o.time.empty()) slurm->set_time(o.time);
  if (!o.partition.empty()) slurm->set_partition(o.partition);
  if (!o.account.empty()) slurm->set_account(o.account);
  if (!o.qos.empty()) slurm->set_qos(o.qos);
  if (o.signal_seconds >= 0) slurm->set_signal_seconds(o.signal_seconds);
  if (o.max_requeues >= 0) slurm->set_max_requeues(o.max_requeues);
  const int ranks = o.nodes * (o.tasks_per_node > 0 ? o.tasks_per_node : std::max(1, o.gpus_per_node));
  // Refused here, not after the queue wait (the login node sees the same shared files); this is also
  // where a batch that does not divide over the job's ranks is caught.
  if (!PassesPreflight(config, o.eval ? PreflightFor::kEval : PreflightFor::kTrain, ranks)) return 2;

  if (o.cpus_per_task > 0 && o.cpus_per_task < config.data().num_workers())
    LOG(WARNING) << "--cpus-per-task " << o.cpus_per_task << " is below data.num_workers " << config.data().num_workers()
                 << ": each rank's decode threads will share " << o.cpus_per_task << " core(s) with its training thread";

  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  const std::string config_text = ConfigToText(config);
  std::vector<Job> jobs;
  jobs.push_back(Render(config, o, o.eval ? "eval" : "train", stamp, self, o.dependency));
  // A dry run's evaluation script has no dependency line: it is given when both are submitted.
  if (o.then_eval)
    jobs.push_back(Render(config, o, "eval", stamp, self, o.dry_run ? "" : "afterok:{{TRAIN_JOB_ID}}"));

  MakeDirectories(Absolute(config.train().run_dir()) + "/slurm");
  for (const auto& job : jobs) {
    WriteFile(job.config_path, config_text, false);
    WriteFile(job.script_path, job.script, true);
  }
  if (o.dry_run) {
    for (const auto& job : jobs) std::cout << job.script;
    std::cerr << "evl submit: dry run; wrote " << jobs.front().script_path << " and its config, submitted nothing\n";
    if (o.then_eval)
      std::cerr << "evl submit: and " << jobs.back().script_path << "; to submit both later, evaluation after training "
                << "succeeds:\n  train_id=$(sbatch --parsable " << jobs.front().script_path
                << ") && sbatch --dependency=afterok:$train_id " << jobs.back().script_path << "\n";
    return 0;
  }
  const std::string train_id = Submit(jobs.front());
  std::cout << "submitted " << jobs.front().kind << " job " << train_id << "\n  script " << jobs.front().script_path
            << "\n  log    " << LogFor(jobs.front(), train_id) << "\n";
  if (o.then_eval) {
    Job& eval = jobs.back();
    eval.script = RenderTemplate(eval.script, {{"TRAIN_JOB_ID", train_id}}, eval.script_path);
    WriteFile(eval.script_path, eval.script, true);
    const std::string eval_id = Submit(eval);
    std::cout << "submitted eval job " << eval_id << " (after " << train_id << " succeeds)\n  script "
              << eval.script_path << "\n  log    " << LogFor(eval, eval_id) << "\n";
  }
  return 0;
}

}  // namespace

void AddSubmitCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("submit", "render and submit a Slurm batch job (srun --mpi=pmix, one task per GPU)");
  auto flags = std::make_shared<ConfigFlags>();
  auto o = std::make_shared<SubmitOptions>();
  AddConfigFlags(cmd, flags.get());
  cmd->add_option("--nodes", o->nodes, "nodes")->check(CLI::PositiveNumber);
  cmd->add_option("--gpus-per-node", o->gpus_per_node, "GPUs per node (one task each); 0 for CPU-only jobs");
  cmd->add_option("--tasks-per-node", o->tasks_per_node, "tasks (ranks) per node; default: one per GPU, or 1");
  cmd->add_option("--cpus-per-task", o->cpus_per_task, "CPU cores per task (decode threads + compute)");
  cmd->add_option("--time", o->time, "time limit (default slurm.time)");
  cmd->add_option("--partition", o->partition, "partition (default slurm.partition)");
  cmd->add_option("--account", o->account, "account (default slurm.account)");
  cmd->add_option("--qos", o->qos, "QOS (default slurm.qos)");
  cmd->add_option("--constraint", o->constraint, "node features");
  cmd->add_option("--mem", o->mem, "memory per node");
  cmd->add_option("--job-name", o->job_name, "job name (default evl-train / evl-eval)");
  cmd->add_option("--dependency", o->dependency, "sbatch dependency, e.g. afterok:123");
  cmd->add_option("--signal-seconds", o->signal_seconds,
                  "checkpoint-and-requeue signal this many seconds before the time limit (default slurm.signal_seconds; 0: none)");
  cmd->add_option("--max-requeues", o->max_requeues, "stop requeueing after this many restarts (default slurm.max_requeues)");
  cmd->add_option("--template", o->template_path, "sbatch template (default: the built-in slurm/evl.sbatch.in)");
  cmd->add_flag("--dry-run", o->dry_run, "print the script (and write it to RUN_DIR/slurm) without submitting");
  cmd->add_flag("--eval", o->eval, "submit `evl eval` of a checkpoint instead of training");
  cmd->add_flag("--then-eval", o->then_eval, "also submit an evaluation that runs after training succeeds");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint for --eval (default: the run's newest valid one)");
  cmd->add_option("sbatch_args", o->sbatch_args, "extra sbatch options, after --");
  OnChosen(cmd, inv, [&inv, flags, o] { return RunSubmit(*flags, *o, inv.self); });
}

}  // namespace evl
