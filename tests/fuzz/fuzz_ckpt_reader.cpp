// libFuzzer target: the checkpoint reader must reject any byte string with a CheckpointError (or
// accept it), never crash, read out of bounds, or allocate more than the input could describe.
//
// Random bytes almost never carry a valid manifest checksum, which would keep the fuzzer at the
// header. So the first input byte picks a mode: odd = the rest as is, even = the rest with the
// manifest crc32c recomputed, which lets mutations reach the manifest parser and the tensor table.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "evl/crc32c.h"
#include "evl/checkpoint_format.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A valid checkpoint as the seed, written by the real writer, when the runner asks for one.
  if (const char* dir = std::getenv("EVL_FUZZ_SEED_DIR")) {
    evl::CheckpointState s;
    s.step = 7;
    s.config_text = "train { lr: 0.001 }\n";
    s.backbone_preset = "custom";
    s.tensors = {{"model/decoder.cls_token", torch::arange(6, torch::kFloat).reshape({2, 3})},
                 {"optim/decoder.cls_token/step", torch::tensor({3}, torch::kLong)},
                 {"model/head.bias", torch::ones({4}, torch::kBFloat16)}};
    const std::string tmp = std::string(dir) + "/seed.tmp";
    evl::WriteCheckpointFile(tmp, s);
    std::ifstream in(tmp, std::ios::binary);
    const std::string ckpt((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(std::string(dir) + "/seed_as_is", std::ios::binary) << '\x01' << ckpt;
    std::ofstream(std::string(dir) + "/seed_crc_fixed", std::ios::binary) << '\x00' << ckpt;
    std::remove(tmp.c_str());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0 && bytes.size() >= 20) {
    uint64_t mlen = 0;
    std::memcpy(&mlen, bytes.data() + 8, 8);
    if (mlen <= bytes.size() - 20) {
      const uint32_t crc = evl::Crc32c(bytes.data() + 20, mlen);
      std::memcpy(&bytes[16], &crc, 4);
    }
  }
  try {
    evl::ReadCheckpointBuffer(bytes, "fuzz.evlckpt");
  } catch (const evl::CheckpointError&) {
  }
  return 0;
}
