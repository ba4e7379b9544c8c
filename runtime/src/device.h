// Where a bundle runs: the device the user asked for, checked against the
// device the bundle was compiled for, and the TVM device runtime it needs.
#pragma once

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/tensor.h>

#include <string>

namespace sam3::detail {

// "cpu" | "cuda" | "metal" -> DLDevice{type, 0}; throws sam3::Error otherwise.
DLDevice parse_device(const std::string& name);
std::string device_name(DLDevice dev);

// Throws unless a bundle compiled for `bundle_device` (manifest target.device)
// can run on `dev`, naming both.
void check_bundle_device(const std::string& bundle_device, DLDevice dev);

// Makes the TVM runtime for `dev` available before bundle libraries load: for
// CUDA, dlopen(RTLD_GLOBAL) of libtvm_runtime_cuda.so next to libtvm_runtime.so
// (it needs libcudart and the driver's libcuda.so.1); then checks a GPU is there.
// Throws "CUDA could not be initialised: ..." with the reason (dlerror()).
void ensure_device_runtime(DLDevice dev);

// bf16 bundles run AVX512_BF16 instructions: refuse them on CPUs without it
// (they would die of SIGILL in the first linear layer).
void check_cpu_precision(const std::string& precision);

// Waits for the work queued on `dev`'s default stream (to_host calls it after a copy).
void sync_device(DLDevice dev);

// Copies between host and `dev` (no-ops returning the input when dev is the CPU).
tvm::ffi::Tensor to_device(const tvm::ffi::Tensor& host, DLDevice dev);
tvm::ffi::Tensor to_host(const tvm::ffi::Tensor& t);

}  // namespace sam3::detail
