#include "evl/model_factory.h"

#include <torch/torch.h>

#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "evl/weights.h"

namespace evl {

EVLOptions EvlOptionsFromConfig(const EvlConfig& config, const torch::Device& device) {
  const auto& m = config.model();
  const auto& bb = m.backbone();
  EVLOptions o;
  o.backbone.width = bb.width();
  o.backbone.layers = bb.layers();
  o.backbone.heads = bb.heads();
  o.backbone.patch_size = bb.patch_size();
  o.backbone.input_size = bb.input_size();
  o.backbone.mlp_factor = bb.mlp_factor();
  switch (bb.precision()) {
    case AUTO: o.backbone.dtype = device.is_cuda() ? torch::kHalf : torch::kFloat; break;
    case FP16:
      if (!device.is_cuda())
        throw std::invalid_argument("model.backbone.precision: FP16 needs CUDA (CPU has no fp16 matmul); use BF16 or FP32");
      o.backbone.dtype = torch::kHalf;
      break;
    case BF16: o.backbone.dtype = torch::kBFloat16; break;
    default: o.backbone.dtype = torch::kFloat; break;
  }
  const auto& d = m.decoder();
  o.decoder.num_layers = d.num_layers();
  o.decoder.qkv_dim = d.qkv_dim();
  o.decoder.num_heads = d.num_heads();
  o.decoder.mlp_factor = d.mlp_factor();
  o.decoder.mlp_dropout = d.mlp_dropout();
  o.decoder.temporal_conv = d.temporal_conv();
  o.decoder.temporal_pos_embed = d.temporal_pos_embed();
  o.decoder.temporal_cross_attention = d.temporal_cross_attention();
  o.num_frames = m.num_frames();
  o.num_classes = m.num_classes();
  o.cls_dropout = m.cls_dropout();
  return o;
}

EVLTransformer BuildModel(const EvlConfig& config, const torch::Device& device) {
  const EVLOptions options = EvlOptionsFromConfig(config, device);
  // The backbone's random init must not depend on what else drew from the global generator.
  torch::manual_seed(static_cast<uint64_t>(config.model().backbone().init_seed()));
  EVLTransformer model(options);
  if (!config.model().backbone().weights().empty()) {
    LoadClipVisual(*model->backbone(), config.model().backbone().weights());
  }
  model->to(device);
  return model;
}

ClipDatasetOptions DatasetOptionsFromConfig(const EvlConfig& c, bool train) {
  ClipDatasetOptions o;
  o.list_path = train ? c.data().train_list() : c.data().val_list();
  o.data_root = !train && !c.data().val_data_root().empty() ? c.data().val_data_root() : c.data().data_root();
  o.num_classes = c.model().num_classes();
  o.num_frames = c.model().num_frames();
  o.sampling_rate = c.data().sampling_rate();
  o.tsn_sampling = c.data().tsn_sampling();
  o.crop_size = c.model().backbone().input_size();
  o.spatial_size = c.data().spatial_size();
  o.num_temporal_views = c.data().num_temporal_views();
  o.num_spatial_views = c.data().num_spatial_views();
  o.swscale_eval_resize = c.data().swscale_eval_resize();
  for (int i = 0; i < 3; ++i) {
    o.mean[i] = c.data().mean(i);
    o.std[i] = c.data().std(i);
  }
  o.mirror = c.data().mirror();
  o.auto_augment = c.data().auto_augment();
  o.min_scale = c.data().random_resized_crop_min_scale();
  o.seed = static_cast<uint64_t>(c.train().seed());
  o.train = train;
  return o;
}

std::string ModelSummaryText(const EvlConfig& config) {
  EVLTransformer model(EvlOptionsFromConfig(config, torch::Device(torch::kCPU)));
  const ModelSummary s = Summarize(model);
  std::ostringstream o;
  o << std::fixed << std::setprecision(2);
  o << "model      " << config.model().backbone().preset() << " backbone, " << config.model().decoder().num_layers()
    << "-layer decoder, " << config.model().num_frames() << " frames of " << config.model().backbone().input_size()
    << "x" << config.model().backbone().input_size() << "\n"
    << "params     frozen " << s.frozen_params / 1e6 << " M, trainable " << s.trainable_params / 1e6 << " M\n"
    << "GFLOPs     " << s.backbone_gflops + s.decoder_gflops << " per clip (backbone " << s.backbone_gflops
    << ", decoder " << s.decoder_gflops << ")\n";
  return o.str();
}

}  // namespace evl
