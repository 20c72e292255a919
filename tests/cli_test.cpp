#include <gtest/gtest.h>

#include <regex>

#include <fstream>

#include "test_paths.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;

TEST(Cli, HelpListsEverySubcommand) {
  auto r = RunCommand(kEvl + " --help");
  EXPECT_EQ(r.status, 0) << r.output;
  // Each one a line of the subcommand list with its description ("train" alone also matches words
  // of the descriptions, as "eval" and "info" do).
  const size_t list = r.output.find("Subcommands:\n");
  ASSERT_NE(list, std::string::npos) << r.output;
  for (const char* cmd : {"train", "eval", "predict", "launch", "submit", "data", "ckpt", "config", "info"})
    EXPECT_TRUE(std::regex_search(r.output.substr(list), std::regex(std::string("\n  ") + cmd + " +[a-z]")))
        << cmd << " missing from:\n" << r.output;
  auto sub = RunCommand(kEvl + " config --help");
  EXPECT_EQ(sub.status, 0);
  EXPECT_NE(sub.output.find("--set"), std::string::npos);
}

TEST(Cli, UsageErrorsExitTwoAndNameTheMistypedSubcommand) {
  auto r = RunCommand(kEvl + " trian --config x.pbtxt");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown subcommand 'trian' (did you mean 'train'?)"), std::string::npos) << r.output;
  auto nested = RunCommand(kEvl + " data prepar --list l");
  EXPECT_EQ(nested.status, 2) << nested.output;
  EXPECT_NE(nested.output.find("evl data: unknown subcommand 'prepar' (did you mean 'prepare'?)"), std::string::npos)
      << nested.output;
  auto far = RunCommand(kEvl + " frobnicate");
  EXPECT_EQ(far.status, 2) << far.output;
  EXPECT_EQ(far.output.find("did you mean"), std::string::npos) << far.output;
  auto flag = RunCommand(kEvl + " train --no-such-flag");
  EXPECT_EQ(flag.status, 2) << flag.output;
  auto version = RunCommand(kEvl + " --version");
  EXPECT_EQ(version.status, 0) << version.output;
  EXPECT_TRUE(std::regex_search(version.output, std::regex("^evl [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit "))) << version.output;
}

TEST(Cli, SetTakesSeveralFieldsAtOnce) {
  auto r = RunCommand(kEvl + " config --set model.num_frames=4 data.num_workers=3 --set train.seed=9");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* line : {"num_frames: 4", "num_workers: 3", "seed: 9"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << " missing from:\n" << r.output;
  // A positional argument after --set stays positional; `--` still ends the options.
  auto bad = RunCommand(kEvl + " config --set model.num_frames=4 list.txt");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("not expected: list.txt"), std::string::npos) << bad.output;
  auto extra = RunCommand(kEvl + " submit --dry-run --set train.run_dir=" + ScratchDir("cli_set_dashdash") +
                          " data.num_workers=1 -- --comment evl-test");
  EXPECT_EQ(extra.status, 0) << extra.output;
  EXPECT_NE(extra.output.find("#SBATCH --comment=evl-test"), std::string::npos) << extra.output;
}

TEST(Cli, AnInvalidValueIsOneMessageWithoutLibprotobufsOwnLines) {
  auto r = RunCommand(kEvl + " config --set model.num_frames=abc");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("'abc' is not a valid int32 for field 'num_frames'"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("libprotobuf"), std::string::npos) << r.output;
}

// Mistakes a run would meet at step 5000 (or in its first evaluation) are all reported before it
// starts, once per job, with exit status 2 and no MPI banner.
TEST(Preflight, EveryProblemAtOnceBeforeAnythingStarts) {
  const std::string dir = ScratchDir("preflight");
  { std::ofstream(dir + "/val.txt") << "a.mp4 1\nb.mp4 9\n"; }
  { std::ofstream(dir + "/train.txt") << "a.mp4 1\n"; }
  { std::ofstream(dir + "/classes.json") << R"(["up", "down", "left"])"; }
  const std::string bad = " --set data.train_list=" + dir + "/train.txt --set data.val_list=" + dir + "/val.txt" +
                          " --set data.spatial_size=16 --set data.auto_augment=rand-m7-n4-foo --set train.lr=-1" +
                          " --set data.class_map=" + dir + "/classes.json --set model.backbone.weights=" + dir +
                          "/ViT-B-16.pt --set train.run_dir=" + dir + "/run";
  const std::vector<std::string> expected = {
      "6 problem(s) found before starting",
      "train.lr must be > 0",
      "data.auto_augment \"rand-m7-n4-foo\": section \"foo\" has no value",
      "data.spatial_size 16 is below the backbone's input size 32",
      "model.backbone.weights: no such file: " + dir + "/ViT-B-16.pt",
      "data.val_list: " + dir + "/val.txt:2: label 9",
      "data.class_map: " + dir + "/classes.json: class map has 3 names, model.num_classes is 4"};
  auto train = RunCommand(kEvl + " train" + bad);
  EXPECT_EQ(train.status, 2) << train.output;
  for (const auto& e : expected) EXPECT_NE(train.output.find(e), std::string::npos) << e << "\nin:\n" << train.output;
  EXPECT_FALSE(std::ifstream(dir + "/run/metrics.jsonl").good());
  auto launched = RunCommand(kEvl + " launch -n 2 -- train" + bad);
  EXPECT_EQ(launched.status, 2) << launched.output;
  EXPECT_EQ(launched.output.find("problem(s) found"), launched.output.rfind("problem(s) found")) << "printed twice";
  EXPECT_NE(launched.output.find("problem(s) found"), std::string::npos) << launched.output;
  EXPECT_EQ(launched.output.find("MPI_ABORT"), std::string::npos) << launched.output;
  EXPECT_EQ(launched.output.find("mpirun"), std::string::npos) << launched.output;
  auto check = RunCommand(kEvl + " config --check" + bad);
  EXPECT_EQ(check.status, 2) << check.output;
  auto fine = RunCommand(kEvl + " config --check --ranks 2");
  EXPECT_EQ(fine.status, 0) << fine.output;
  EXPECT_NE(fine.output.find("preflight: no problem found"), std::string::npos) << fine.output;
  auto uneven = RunCommand(kEvl + " config --check --ranks 3");
  EXPECT_EQ(uneven.status, 2) << uneven.output;
  EXPECT_NE(uneven.output.find("train.batch_size 16 must divide by the 3 rank(s)"), std::string::npos) << uneven.output;
}

// A cluster login node installs what building and running needs, not Slurm's daemons or clang.
TEST(InstallDeps, TheRuntimeSetHasNoTestOnlyPackage) {
  const std::string script = std::string(EVL_SOURCE_DIR) + "/scripts/install-deps.sh";
  auto runtime = RunCommand(script + " --list");
  ASSERT_EQ(runtime.status, 0) << runtime.output;
  auto test = RunCommand(script + " --test --list");
  ASSERT_EQ(test.status, 0) << test.output;
  auto has = [](const std::string& list, const std::string& p) { return ("\n" + list).find("\n" + p + "\n") != std::string::npos; };
  for (const char* p : {"libtorch-dev", "libopenmpi-dev", "libavcodec-dev", "libprotobuf-dev", "libgoogle-glog-dev"}) {
    EXPECT_TRUE(has(runtime.output, p)) << p << " missing from the runtime set";
    EXPECT_TRUE(has(test.output, p)) << p << " missing from the test set";
  }
  for (const char* p : {"slurmctld", "slurmd", "munge", "clang", "python3-torch", "libgtest-dev", "ffmpeg"}) {
    EXPECT_FALSE(has(runtime.output, p)) << p << " is test-only";
    EXPECT_TRUE(has(test.output, p)) << p << " missing from the test set";
  }
}

TEST(Cli, InfoPrintsEveryDependencyVersion) {
  auto r = RunCommand(kEvl + " info");
  ASSERT_EQ(r.status, 0) << r.output;
  // Any version (the GPU machines run LibTorch 2.x and another protobuf): a version number is there.
  // Versions, not labels: a line that printed only its label fails.
  for (const char* dep : {"\nLibTorch +[0-9]+\\.[0-9]+\\.[0-9]+", "\nMPI +Open MPI v[0-9]+\\.[0-9]+",
                          "\nNCCL +(not built|[0-9]+\\.[0-9]+\\.[0-9]+)",
                          "\nFFmpeg +[0-9n][^ ]* \\(libavformat [0-9]+\\.[0-9]+\\.[0-9]+, libavcodec [0-9]+\\.",
                          "\nprotobuf +[0-9]+\\.[0-9]+\\.[0-9]+", "\nBLAS +/\\S+", "\nthreads +[0-9]+ torch, [0-9]+ cores"})
    EXPECT_TRUE(std::regex_search(r.output, std::regex(dep))) << dep << " missing from:\n" << r.output;
}

TEST(Cli, ConfigRoundTripsThroughPrintedText) {
  std::string dir = ScratchDir("cli_config");
  auto first = RunCommand(kEvl + " config --set model.num_frames=4 --set data.mean=0.1,0.2,0.3");
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("num_frames: 4"), std::string::npos);
  { std::ofstream(dir + "/printed.pbtxt") << first.output; }
  auto second = RunCommand(kEvl + " config --config " + dir + "/printed.pbtxt");
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_EQ(first.output, second.output);
}

TEST(Cli, BadConfigExitsNonZeroNamingThePlace) {
  std::string dir = ScratchDir("cli_bad");
  { std::ofstream(dir + "/bad.pbtxt") << "model {\n  num_framez: 3\n}\n"; }
  auto r = RunCommand(kEvl + " config --config " + dir + "/bad.pbtxt");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("bad.pbtxt:2:3"), std::string::npos) << r.output;
  auto s = RunCommand(kEvl + " config --set model.nope=1");
  EXPECT_NE(s.status, 0);
  EXPECT_NE(s.output.find("--set model.nope=1"), std::string::npos) << s.output;
}

TEST(Cli, ShippedConfigsAreValid) {
  for (const char* name : {"quickstart", "k400_vitb16_8f_dec4x768", "k400_vitb16_16f_dec4x768", "k400_vitb16_32f_dec4x768",
                           "k400_vitl14_8f_dec4x1024", "k400_vitl14_16f_dec4x1024", "k400_vitl14_32f_dec4x1024"}) {
    auto r = RunCommand(kEvl + " config --config " + std::string(EVL_SOURCE_DIR) + "/configs/" + name + ".pbtxt");
    EXPECT_EQ(r.status, 0) << name << "\n" << r.output;
  }
  auto q = RunCommand(kEvl + " config --config " + std::string(EVL_SOURCE_DIR) + "/configs/quickstart.pbtxt");
  EXPECT_EQ(q.output, RunCommand(kEvl + " config").output) << "the embedded default is configs/quickstart.pbtxt";
}

TEST(Cli, TrainRefusesFp16OnCpu) {
  auto r = RunCommand(kEvl + " train --set train.precision=FP16 --set train.run_dir=scratch/precision");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("train.precision FP16 needs CUDA"), std::string::npos) << r.output;
}

// The dataset `evl train` writes for data.synthetic is the one `evl data synth` writes, byte for byte,
// so a run on the embedded default can be repeated on a dataset written once.
TEST(DataSynth, TrainWritesTheSameBytesAsTheCli) {
  const std::string dir = ScratchDir("synth_same_bytes");
  auto t = RunCommand(kEvl + " train --set train.num_steps=1 --set data.val_list= --set data.synthetic.videos=24"
                      " --set train.run_dir=" + dir + "/run");
  ASSERT_EQ(t.status, 0) << t.output;
  auto c = RunCommand(kEvl + " data synth --out " + dir + "/cli --classes 4 --videos 24 --frames 32 --size 48x48 --seed 0");
  ASSERT_EQ(c.status, 0) << c.output;
  const std::string from_train = RunCommand("cd " + dir + "/run/cache/synthetic-data && md5sum train.txt val.txt videos/*").output;
  EXPECT_NE(from_train.find("videos/00023.mp4"), std::string::npos) << from_train;
  EXPECT_EQ(from_train, RunCommand("cd " + dir + "/cli && md5sum train.txt val.txt videos/*").output);
}

TEST(Cli, SubmitRefusesALayoutThatSplitsTheBatchUnevenly) {
  // Rendering needs no Slurm; the check happens before anything is written or submitted.
  auto r = RunCommand(kEvl + " submit --nodes 1 --tasks-per-node 3 --dry-run --set train.run_dir=scratch/submit_uneven");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("train.batch_size 16 must divide by the 3 rank(s)"), std::string::npos) << r.output;
  auto s = RunCommand(kEvl + " submit --time '1 day' --dry-run --set train.run_dir=scratch/submit_uneven");
  EXPECT_EQ(s.status, 2) << s.output;
  EXPECT_NE(s.output.find("--time '1 day' contains spaces"), std::string::npos) << s.output;
}

// A dry run with --then-eval writes both scripts, each submittable later as it is (the dependency
// is given on the sbatch line it prints), and too few cores for the decode threads is said.
TEST(Cli, SubmitThenEvalDryRunWritesBothScriptsReadyToSubmit) {
  const std::string dir = ScratchDir("submit_then_eval");
  auto r = RunCommand(kEvl + " submit --then-eval --dry-run --cpus-per-task 1 --set data.num_workers=4" +
                      " --set train.run_dir=" + dir);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--cpus-per-task 1 is below data.num_workers 4"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("sbatch --dependency=afterok:\\$train_id /\\S+/slurm/eval-")))
      << r.output;
  const std::string train = RunCommand("cat " + dir + "/slurm/train-*.sbatch").output;
  const std::string eval = RunCommand("cat " + dir + "/slurm/eval-*.sbatch").output;
  EXPECT_NE(train.find(" train --config "), std::string::npos) << train;
  EXPECT_NE(eval.find(" eval --config "), std::string::npos) << eval;
  EXPECT_EQ(eval.find("{{"), std::string::npos) << "an unfilled placeholder:\n" << eval;
  EXPECT_EQ(eval.find("--dependency"), std::string::npos) << eval;
}

// An empty train_list (an unset shell variable in a job script) is an error unless the synthetic
// dataset is asked for; the quick-start config asks for it.
TEST(Cli, SyntheticDataOnlyWhenAskedFor) {
  const std::string dir = ScratchDir("train_no_list");
  auto r = RunCommand(kEvl + " train --set data.synthetic.enabled=false --set data.train_list= --set train.run_dir=" + dir);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("data.train_list is empty"), std::string::npos) << r.output;
  EXPECT_FALSE(std::ifstream(dir + "/cache/synthetic-data/train.txt").good()) << "synthetic data written anyway";
}

// Each rank used to search and verify the run's checkpoints itself before MPI started; rank 0 does
// it for the job now. Without one, every rank stops with status 2, the job says so once, and
// nothing else (the synthetic dataset) is made first.
TEST(Cli, EvalWithoutACheckpointIsOneMessageAndStatusTwo) {
  const std::string dir = ScratchDir("eval_no_checkpoint");
  const std::string mpirun = std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np 2 ";
  auto r = RunCommand(mpirun + kEvl + " eval --set train.run_dir=" + dir);
  EXPECT_EQ(r.status, 2) << r.output;
  const std::string said = "no --checkpoint given and no valid checkpoint in " + dir + "/checkpoints";
  EXPECT_NE(r.output.find(said), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(said), r.output.rfind(said)) << "said by more than one rank:\n" << r.output;
  EXPECT_FALSE(std::ifstream(dir + "/cache/synthetic-data/val.txt").good()) << "synthetic data written first";
}

TEST(Cli, GpuRequestsOnACpuOnlyBuildAreRefusedBeforeAnythingRuns) {
  const std::string info = RunCommand(kEvl + " info").output;
  if (info.find("CUDA       not built") == std::string::npos) GTEST_SKIP() << "this evl has CUDA";
  auto s = RunCommand(kEvl + " submit --nodes 1 --gpus-per-node 2 --dry-run --set train.run_dir=scratch/submit_gpu");
  EXPECT_EQ(s.status, 2) << s.output;
  EXPECT_NE(s.output.find("--gpus-per-node 2: this evl was built against a LibTorch without CUDA"), std::string::npos)
      << s.output;
  // Slurm's GPU variables mean GPUs were allocated: training on the CPU instead is refused.
  auto t = RunCommand("SLURM_GPUS_ON_NODE=4 " + kEvl + " train --set train.run_dir=scratch/train_gpu_requested");
  EXPECT_NE(t.status, 0) << t.output;
  EXPECT_NE(t.output.find("GPUs were requested (SLURM_GPUS_ON_NODE=4), but this evl's LibTorch was built without CUDA"),
            std::string::npos) << t.output;
  auto c = RunCommand(kEvl + " train --set train.device=CUDA --set train.run_dir=scratch/train_gpu_requested");
  EXPECT_NE(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("train.device CUDA, but"), std::string::npos) << c.output;
}

TEST(DataPrepare, ShardsOverRanksSkipsBadInputIsRestartableAndKeepsOriginals) {
  const std::string dir = ScratchDir("data_prepare"), src = dir + "/src", dst = dir + "/dst";
  auto w = RunCommand(kEvl + " data synth --out " + src + " --videos 6 --frames 40 --size 64x48");
  ASSERT_EQ(w.status, 0) << w.output;
  RunCommand("cd " + src + " && cat train.txt val.txt > all.txt && head -c 3000 /dev/urandom > videos/bad.mp4 && "
             "echo 'videos/bad.mp4 1' >> all.txt");
  const std::string before = RunCommand("cd " + src + " && md5sum videos/*").output;
  const std::string mpirun = std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np 2 ";
  const std::string prepare = kEvl + " data prepare --list " + src + "/all.txt --data-root " + src +
                              " --short-side 32 --keyint 4 --out ";
  auto p = RunCommand(mpirun + prepare + dst);
  EXPECT_EQ(p.status, 1) << p.output;  // one input is undecodable
  EXPECT_NE(p.output.find("prepared 6, already there 0, failed 1 of 7"), std::string::npos) << p.output;
  EXPECT_EQ(RunCommand("grep -c . " + dst + "/all.txt").output, "6\n");  // find("6") also matched "16"
  EXPECT_EQ(RunCommand("grep -c bad.mp4 " + dst + "/all.txt.failed").output, "1\n");
  auto probe = RunCommand(kEvl + " data probe " + dst + "/all.txt --data-root " + dst);
  EXPECT_EQ(probe.status, 0) << probe.output;
  // Restart: nothing is redone; the originals are untouched.
  auto again = RunCommand(prepare + dst);
  EXPECT_NE(again.output.find("prepared 0, already there 6, failed 1 of 7"), std::string::npos) << again.output;
  EXPECT_EQ(RunCommand("cd " + src + " && md5sum videos/*").output, before);
  // The dataset's own directory as --out is refused before anything is written; a video inside
  // --out is refused per file.
  const std::string all_before = RunCommand("md5sum " + src + "/all.txt").output;
  auto inplace = RunCommand(prepare + src);
  EXPECT_EQ(inplace.status, 2) << inplace.output;
  EXPECT_NE(inplace.output.find("is the dataset's own directory"), std::string::npos) << inplace.output;
  // A tune libx264 does not have is refused before any rank starts, not once per file.
  auto tune = RunCommand(prepare + dir + "/tuned --tune fastdecod");
  EXPECT_EQ(tune.status, 2) << tune.output;
  EXPECT_NE(tune.output.find("--tune fastdecod: not one of libx264's tunes"), std::string::npos) << tune.output;
  EXPECT_NE(RunCommand("test -e " + dir + "/tuned").status, 0);
  RunCommand("mkdir -p " + dir + "/outer && cp -r " + src + " " + dir + "/outer/src");
  auto inside = RunCommand(kEvl + " data prepare --list " + dir + "/outer/src/all.txt --data-root " + dir +
                           "/outer/src --out " + dir + "/outer --keyint 4");
  EXPECT_NE(inside.output.find("refusing to overwrite an original"), std::string::npos) << inside.output;
  EXPECT_EQ(RunCommand("cd " + src + " && md5sum videos/*").output, before);
  EXPECT_EQ(RunCommand("md5sum " + src + "/all.txt").output, all_before);
  // The prepared list feeds `evl data bench` (without its PyAV baseline here).
  auto bench = RunCommand(kEvl + " data bench --list " + dst + "/all.txt --data-root " + dst + " --rounds 1 --python ''");
  EXPECT_EQ(bench.status, 0) << bench.output;
  EXPECT_TRUE(bench.output.find("\ntrain ") != std::string::npos && bench.output.find("\neval ") != std::string::npos)
      << bench.output;
}

// `evl data bench` puts the official loader's logic (PyAV decoding every frame; with RandAugment,
// Pillow on every frame) beside every path it measures, and says how many cores feed a target.
TEST(DataBench, TheOfficialLogicStandsBesideEveryPath) {
  const std::string dir = ScratchDir("data_bench_official");
  auto w = RunCommand(kEvl + " data synth --out " + dir + " --videos 2 --frames 40 --size 64x48 && cd " + dir +
                      " && cat train.txt val.txt > all.txt");
  ASSERT_EQ(w.status, 0) << w.output;
  auto bench = RunCommand(kEvl + " data bench --list " + dir + "/all.txt --data-root " + dir +
                          " --rounds 1 --target 100 --set data.auto_augment=rand-m7-n4-mstd0.5-inc1 2>&1");
  ASSERT_EQ(bench.status, 0) << bench.output;
  for (const char* path : {"\ntrain  ", "\ntrain + rand-m7-n4-mstd0.5-inc1", "\neval  "}) {
    const size_t at = bench.output.find(path);
    ASSERT_NE(at, std::string::npos) << path << "\n" << bench.output;
    const std::string line = bench.output.substr(at + 1, bench.output.find('\n', at + 1) - at - 1);
    EXPECT_EQ(line.find("(PyAV:"), std::string::npos) << "no baseline: " << line;
    EXPECT_EQ(line.back(), 'x') << line;  // the ratio to the official logic
  }
  EXPECT_NE(bench.output.find("cores to feed 100 clips/s: train "), std::string::npos) << bench.output;
}

}  // namespace
}  // namespace evl::test
