# evl_gpu_guarded: every source with code behind EVL_HAVE_NCCL or EVL_TORCH_CUDA, compiled with
# those guards on and never linked. Without a CUDA LibTorch (Debian's, CI's) that code is otherwise
# preprocessed away, and a typo in it would first be seen on a user's GPU cluster. The CUDA
# toolkit's headers and nccl.h are enough to compile it; Debian's libtorch-dev ships the c10/cuda
# headers but not the configure-time c10/cuda/impl/cuda_cmake_macros.h, which
# C10_CUDA_NO_CMAKE_CONFIGURE_FILE tells them to do without.
#
# A source that gains such a guard must be listed here: tests/gpu_guarded_test.sh fails otherwise.
# (autocast.cpp's LibTorch >= 2.4 branch is a version check, not a guard: 1.13's headers cannot
# compile it; bench/gpu_check.sh builds it on the GPU machine first.)
set(EVL_GPU_GUARDED_SOURCES
  model/src/runtime_info.cpp
  worker/comm/src/nccl_info.cpp
  worker/comm/src/nccl_communicator.cpp
)
set(EVL_GPU_GUARDED_STATE "not compiled: no cuda_runtime_api.h/nccl.h found")
if(EVL_HAVE_NCCL)
  # A CUDA LibTorch: the real libraries compile (and link) these sources with the guards on.
  set(EVL_GPU_GUARDED_STATE "compiled by the libraries themselves (CUDA LibTorch)")
elseif(NOT C10_CUDA_LIBRARY AND NCCL_INCLUDE_DIR AND CUDART_INCLUDE_DIR)
  list(TRANSFORM EVL_GPU_GUARDED_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/ OUTPUT_VARIABLE _guarded_abs)
  add_library(evl_gpu_guarded OBJECT ${_guarded_abs})
  target_compile_definitions(evl_gpu_guarded PRIVATE EVL_HAVE_NCCL=1 EVL_TORCH_CUDA=1 C10_CUDA_NO_CMAKE_CONFIGURE_FILE)
  target_include_directories(evl_gpu_guarded PRIVATE ${NCCL_INCLUDE_DIR} ${CUDART_INCLUDE_DIR}
                             ${PROJECT_SOURCE_DIR}/worker/comm/src)
  # Usage requirements only (include paths, LibTorch's flags): an object library links nothing.
  target_link_libraries(evl_gpu_guarded PRIVATE evl_comm evl_model)
  set(EVL_GPU_GUARDED_STATE "compiled (evl_gpu_guarded)")
endif()
message(STATUS "CUDA/NCCL-guarded code: ${EVL_GPU_GUARDED_STATE}")
# What the test compares with the tree: the list, and whether it was compiled.
string(REPLACE ";" "\n" _guarded_lines "${EVL_GPU_GUARDED_SOURCES}")
file(WRITE ${PROJECT_BINARY_DIR}/gpu_guarded_sources.txt "# ${EVL_GPU_GUARDED_STATE}\n${_guarded_lines}\n")
