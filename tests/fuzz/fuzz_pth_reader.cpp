// libFuzzer target: the restricted .pth reader must reject any byte string with a WeightsError
// (or accept it), never crash, hang, read out of bounds or run anything.
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

#include "evl/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    evl::ReadTorchSaveStateDictFromBuffer(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pth");
  } catch (const evl::WeightsError&) {
  }
  return 0;
}
