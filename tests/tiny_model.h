// The smallest EVL that has every part (backbone, decoder, head): for tests that need a model,
// not its accuracy.
#pragma once

#include "evl/model.h"

namespace evl::test {

inline EVLOptions TinyEvlOptions() {
  EVLOptions o;
  o.backbone.width = 32;
  o.backbone.layers = 2;
  o.backbone.heads = 2;
  o.backbone.patch_size = 8;
  o.backbone.input_size = 16;
  o.decoder.num_layers = 1;
  o.decoder.qkv_dim = 32;
  o.decoder.num_heads = 2;
  o.num_frames = 2;
  o.num_classes = 3;
  return o;
}

}  // namespace evl::test
