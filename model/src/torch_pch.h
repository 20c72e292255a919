// Precompiled header for the torch-heavy targets (see model/CMakeLists.txt).
#pragma once
#include <torch/torch.h>
