// What a training run settles before its first step, across ranks: which checkpoint to resume
// from (rank 0 decides), whether every rank agrees on config, model and data, and the initial
// parameters (rank 0's). Also the recipe pieces built from the config: precision and AdamW groups.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "evl/communicator.h"
#include "evl/model.h"
#include "evl_config.pb.h"

namespace evl {

// train.precision resolved for the device (AUTO: FP16 on CUDA, FP32 on CPU); FP16 on a CPU is
// refused naming the field.
Precision ResolvePrecision(const TrainConfig& train, const torch::Device& device);

// Throws std::invalid_argument unless train.batch_size divides by world x train.batch_split.
void CheckBatchDivides(const TrainConfig& train, int world);

// AdamW over the model's trainable parameters; with train.no_decay_norm_bias, norms, biases,
// positional embeddings and class tokens in a second group without weight decay (official recipe).
std::unique_ptr<torch::optim::AdamW> MakeOptimizer(EVLTransformerImpl& model, const TrainConfig& train);

// The checkpoint to resume from: for a restarted job (`restarted`: a requeue), the newest one of the
// run that verifies, whatever --resume and train.auto_resume say — a requeue continues, it never
// redoes steps (falling back to what follows when the run has none yet); otherwise --resume, else
// (train.auto_resume) the newest one that verifies. Rank 0 reads and checks the candidates; the
// others learn its choice. "" for a new run.
std::string ChooseResumeCheckpoint(const std::string& flag, bool restarted, const TrainConfig& train,
                                   Communicator& comm);

// Refuses (std::invalid_argument, listing "field: old -> new") a resume whose config differs from
// the saved one in a field that changes the math (configs/config.h), unless `force`.
void CheckResumeConfig(const std::string& saved_config_text, const EvlConfig& now, const std::string& path,
                       bool force, bool lead);

// Throws naming the first differing line when any rank's config/model/dataset differs from rank 0's.
void CheckRanksAgree(const EvlConfig& config, torch::nn::Module& model, int64_t dataset_size, int64_t start_step,
                     Communicator& comm);

// Every rank starts from rank 0's parameters.
void BroadcastParameters(torch::nn::Module& model, Communicator& comm);

}  // namespace evl
