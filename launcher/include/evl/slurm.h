// Slurm integration, owned by the launcher: rendering the batch script of `evl submit`, running
// sbatch/scontrol, and requeueing a job whose ranks checkpointed after a stop signal.
#pragma once

#include <map>
#include <string>

namespace evl {

// Fills every {{NAME}} of `text` from `values`. Throws std::invalid_argument naming the first
// placeholder without a value (a user's edited template may carry a typo).
std::string RenderTemplate(const std::string& text, const std::map<std::string, std::string>& values,
                           const std::string& template_name);

// The job id of `sbatch --parsable` output ("123" or "123;cluster"); throws if there is none.
std::string ParseSbatchJobId(const std::string& output);

// What the environment says about the Slurm job this process runs in.
struct SlurmJobInfo {
  bool in_job = false;     // SLURM_JOB_ID is set
  std::string job_id;
  int restart_count = 0;   // SLURM_RESTART_COUNT (unset on the first run)
};
SlurmJobInfo SlurmJobFromEnv();

// After a checkpoint-and-exit (status 75) in a Slurm job: whether to requeue, given how often the job
// was requeued already. Returns "" to requeue, else the reason not to.
std::string RequeueRefusal(const SlurmJobInfo& job, int max_requeues);

// Whether `scontrol requeue` did requeue the job, from its exit status and output: 0; 143 (the
// requeue SIGTERMs every process of the job, scontrol included); or "Job is pending execution"
// (someone requeued it first).
bool RequeueSucceeded(int status, const std::string& output);

// Whether a run that ended with `status` asks Slurm to requeue it: only a stop whose last signal
// was SIGUSR1 (the time-limit warning). A `scancel` sends SIGTERM and ends the job, also when it
// arrives while the USR1 checkpoint is being written; on preemption Slurm requeues the job itself.
bool RequeueAfterStop(int status);

}  // namespace evl
