#include "evl/cli.h"

#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "config.h"
#include "evl/logging.h"
#include "evl/predict.h"
#include "evl/synth.h"
#include "evl/trainer.h"
#include "evl/checkpoint_manager.h"
#include "evl/video_list.h"

namespace evl {
namespace {

void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags) {
  cmd->add_option("--config", flags->config_path,
                  "config file (protobuf text format, schema configs/evl_config.proto); "
                  "default: the embedded quick-start config");
  cmd->add_option("--set", flags->overrides,
                  "override a field: --set model.num_frames=16 (repeatable)")
      ->allow_extra_args(false);
}

// The running evl binary, so `evl launch` starts the same build on every rank.
std::string SelfPath(const char* argv0) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : argv0;
}

int RunConfig(const ConfigFlags& flags) {
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  std::cout << ConfigToText(config);
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  InitLogging(argv[0]);
  CLI::App app{"evl: train and evaluate EVL (frozen CLIP video learners) across MPI ranks"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");

  ConfigFlags flags;
  bool info_model = false;
  PredictRequest predict_request;

  auto* train = app.add_subcommand("train", "train the EVL decoder (under mpirun/srun or alone)");
  AddConfigFlags(train, &flags);
  TrainFlags train_flags;
  train->add_option("--resume", train_flags.resume, "resume from this checkpoint (wins over train.auto_resume)");
  train->add_option("--init-from", train_flags.init_from, "initialise the decoder from an official .pth");
  train->add_flag("--force-resume", train_flags.force_resume, "resume even if math-relevant config fields differ");
  auto* eval = app.add_subcommand("eval", "distributed multi-view evaluation of a checkpoint");
  AddConfigFlags(eval, &flags);
  std::string eval_checkpoint, eval_out;
  eval->add_option("--checkpoint", eval_checkpoint,
                   "official .pth or evl checkpoint (default: the newest valid one in RUN_DIR/checkpoints)");
  eval->add_option("--out", eval_out, "output directory (default RUN_DIR/eval)");
  auto* predict = app.add_subcommand("predict", "logits for one video or a .npy clip tensor");
  AddConfigFlags(predict, &flags);
  predict->add_option("--checkpoint", predict_request.checkpoint, "official .pth or evl checkpoint");
  predict->add_option("--input", predict_request.input, "a video (test views) or a .npy clip tensor [3,T,H,W] / [V,3,T,H,W] (normalized)")
      ->required();
  predict->add_option("--logits-out", predict_request.logits_out, "write raw logits [V, num_classes] as .npy");
  auto* launch = app.add_subcommand("launch", "run an evl command on N local/hostfile ranks via mpirun");
  int launch_ranks = 1;
  std::string launch_hosts, launch_hostfile;
  bool launch_oversubscribe = false, launch_bind = false;
  std::vector<std::string> launch_command;
  launch->add_option("-n,--np", launch_ranks, "number of ranks")->required();
  launch->add_option("--hosts", launch_hosts, "comma-separated host[:slots] list (mpirun --host)");
  launch->add_option("--hostfile", launch_hostfile, "mpirun hostfile");
  launch->add_flag("--oversubscribe", launch_oversubscribe, "allow more ranks than cores (automatic locally)");
  launch->add_flag("--bind", launch_bind, "bind each rank to a core (default: no binding)");
  launch->add_option("command", launch_command, "the evl command to run on every rank, after --");
  auto* submit = app.add_subcommand("submit", "render and submit a Slurm batch job (srun --mpi=pmix, one task per GPU)");
  AddConfigFlags(submit, &flags);
  SubmitOptions so;
  submit->add_option("--nodes", so.nodes, "nodes")->check(CLI::PositiveNumber);
  submit->add_option("--gpus-per-node", so.gpus_per_node, "GPUs per node (one task each); 0 for CPU-only jobs");
  submit->add_option("--tasks-per-node", so.tasks_per_node, "tasks (ranks) per node; default: one per GPU, or 1");
  submit->add_option("--cpus-per-task", so.cpus_per_task, "CPU cores per task (decode threads + compute)");
  submit->add_option("--time", so.time, "time limit (default slurm.time)");
  submit->add_option("--partition", so.partition, "partition (default slurm.partition)");
  submit->add_option("--account", so.account, "account (default slurm.account)");
  submit->add_option("--qos", so.qos, "QOS (default slurm.qos)");
  submit->add_option("--constraint", so.constraint, "node features");
  submit->add_option("--mem", so.mem, "memory per node");
  submit->add_option("--job-name", so.job_name, "job name (default evl-train / evl-eval)");
  submit->add_option("--dependency", so.dependency, "sbatch dependency, e.g. afterok:123");
  submit->add_option("--signal-seconds", so.signal_seconds,
                     "checkpoint-and-requeue signal this many seconds before the time limit (default slurm.signal_seconds; 0: none)");
  submit->add_option("--max-requeues", so.max_requeues, "stop requeueing after this many restarts (default slurm.max_requeues)");
  submit->add_option("--template", so.template_path, "sbatch template (default: the built-in slurm/evl.sbatch.in)");
  submit->add_flag("--dry-run", so.dry_run, "print the script (and write it to RUN_DIR/slurm) without submitting");
  submit->add_flag("--eval", so.eval, "submit `evl eval` of a checkpoint instead of training");
  submit->add_flag("--then-eval", so.then_eval, "also submit an evaluation that runs after training succeeds");
  submit->add_option("--checkpoint", so.checkpoint, "checkpoint for --eval (default: the run's newest valid one)");
  submit->add_option("sbatch_args", so.sbatch_args, "extra sbatch options, after --");
  auto* data = app.add_subcommand("data", "datasets: synth, probe, prepare, bench");
  data->require_subcommand(1);
  SynthOptions synth;
  std::string synth_size = "64x64";
  auto* data_synth = data->add_subcommand("synth", "write the synthetic motion dataset (real encoded videos)");
  data_synth->add_option("--out", synth.out_dir, "output directory")->required();
  data_synth->add_option("--classes", synth.classes, "number of classes (motion directions)");
  data_synth->add_option("--videos", synth.videos, "number of videos");
  data_synth->add_option("--frames", synth.frames, "frames per video");
  data_synth->add_option("--size", synth_size, "WxH");
  data_synth->add_option("--seed", synth.seed, "seed (same seed, same bytes)");
  data_synth->add_option("--codec", synth.codec, "libx264 or mpeg4");
  data_synth->add_option("--gop", synth.gop, "keyframe interval");
  std::string probe_list, probe_root;
  int probe_classes = 1 << 30;
  auto* data_probe = data->add_subcommand(
      "probe", "decode what training and evaluation will decode from every video of a list (the config's train "
               "clip and test views), and say why a video fails");
  AddConfigFlags(data_probe, &flags);
  data_probe->add_option("list", probe_list, "dataset list file")->required();
  data_probe->add_option("--data-root", probe_root, "prefix for relative paths");
  data_probe->add_option("--num-classes", probe_classes, "labels must be below this");
  auto* data_prepare = data->add_subcommand("prepare", "re-encode a dataset for fast training (sharded over MPI ranks)");
  PrepareOptions prep;
  data_prepare->add_option("--list", prep.list, "dataset list file")->required();
  data_prepare->add_option("--data-root", prep.data_root, "prefix for relative paths of the list");
  data_prepare->add_option("--out", prep.out_dir, "output directory (videos, and the list under the same name)")->required();
  data_prepare->add_option("--short-side", prep.short_side, "resize the short side to this (never upscales; 0 keeps it)");
  data_prepare->add_option("--keyint", prep.keyint, "keyframe interval (frames)");
  data_prepare->add_option("--crf", prep.crf, "libx264 quality (lower is better)");
  auto* data_bench = data->add_subcommand("bench", "clips/s per thread of the train and eval paths, beside PyAV");
  AddConfigFlags(data_bench, &flags);
  DataBenchOptions bench;
  bench.pyav_script = std::string(EVL_SOURCE_DIR) + "/bench/pyav_loader.py";
  data_bench->add_option("--list", bench.list, "dataset list (default: K400-like synthetic clips in RUN_DIR/bench_k400like)");
  data_bench->add_option("--data-root", bench.data_root, "prefix for relative paths of --list");
  data_bench->add_option("--videos", bench.videos, "number of synthetic K400-like videos");
  data_bench->add_option("--rounds", bench.rounds, "passes over the videos");
  data_bench->add_option("--python", bench.python, "Python with av and torch for the baseline ('' to skip it)");
  data_bench->add_option("--pyav-script", bench.pyav_script, "the baseline script");
  auto* ckpt = app.add_subcommand("ckpt", "checkpoints: inspect, verify, export");
  ckpt->require_subcommand(1);
  std::string ckpt_path;
  for (const char* action : {"inspect", "verify"}) {
    auto* sub = ckpt->add_subcommand(action, std::string(action) == "inspect"
                                                 ? "print the manifest, tensors and verification result"
                                                 : "check every tensor's checksum; exit non-zero if any fails");
    sub->add_option("path", ckpt_path, "checkpoint file")->required();
  }
  auto* ckpt_export = ckpt->add_subcommand("export", "write a .pth that torch.load opens (official key names)");
  std::string export_format = "pth", export_out;
  ckpt_export->add_option("path", ckpt_path, "checkpoint file")->required();
  ckpt_export->add_option("--format", export_format, "output format")->check(CLI::IsMember({"pth"}));
  ckpt_export->add_option("--out", export_out, "output file (default: the checkpoint's name with .pth)");
  auto* config = app.add_subcommand("config", "validate a config and print the effective one");
  AddConfigFlags(config, &flags);
  auto* info = app.add_subcommand("info", "versions built with and running with (for bug reports)");
  info->add_flag("--model", info_model, "also print the model summary (parameters, FLOPs)");
  AddConfigFlags(info, &flags);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (*config) return RunConfig(flags);
    if (*info) return RunInfo(info_model, flags);
    if (*train) return RunTrain(&argc, &argv, flags, train_flags);
    if (*eval) return RunEval(&argc, &argv, flags, eval_checkpoint, eval_out);
    if (*ckpt) {
      const std::string action = ckpt->get_subcommands().front()->get_name();
      if (action == "export") return RunCkptExport(ckpt_path, export_out);
      return RunCkpt(action, ckpt_path);
    }
    if (*submit) return RunSubmit(flags, so, SelfPath(argv[0]));
    if (*launch) return RunLaunch(launch_ranks, launch_hosts, launch_hostfile, launch_oversubscribe, launch_bind,
                                  launch_command, SelfPath(argv[0]));
    if (*data) {
      if (*data_synth) {
        if (std::sscanf(synth_size.c_str(), "%dx%d", &synth.width, &synth.height) != 2)
          throw std::invalid_argument("--size: expected WxH, got " + synth_size);
        return RunDataSynth(synth);
      }
      if (*data_probe) return RunDataProbe(flags, probe_list, probe_root, probe_classes);
      if (*data_bench) return RunDataBench(flags, bench);
      if (*data_prepare) return RunDataPrepare(&argc, &argv, prep);
      return 2;  // unreachable: CLI11 requires one of the subcommands above
    }
    if (*predict) {
      const EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
      predict_request.device = SingleProcessDevice(config);
      RunPredict(config, predict_request, std::cout);
      return 0;
    }
  } catch (const ConfigError& e) {
    LOG(ERROR) << e.what();
    return 2;
  } catch (const CheckpointError& e) {
    LOG(ERROR) << e.what();
    return 1;
  } catch (const DataError& e) {
    LOG(ERROR) << e.what();
    return 1;
  } catch (const std::invalid_argument& e) {
    LOG(ERROR) << e.what();
    return 2;
  } catch (const std::exception& e) {
    LOG(ERROR) << e.what();
    return 1;
  }
  return 0;
}

}  // namespace evl
