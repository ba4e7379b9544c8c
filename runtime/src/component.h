// One compiled component of a bundle, run through the TVM Relax VM (tvm-ffi).
// Internal header: the public API (sam3/sam3.h) hides TVM types.
#pragma once

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sam3/manifest.h"
#include "sam3/safetensors.h"

namespace sam3::detail {

namespace ffi = tvm::ffi;

DLDataType dtype_of(const std::string& name);  // float32 int64 int32 bool
ffi::Tensor empty_tensor(const std::vector<int64_t>& shape, DLDataType dtype);
ffi::Tensor tensor_from(const std::vector<int64_t>& shape, DLDataType dtype, const void* data);
size_t numel(const ffi::Tensor& t);

// The dtypes components take, and a float tensor's data (host tensors).
inline constexpr DLDataType kF32{kDLFloat, 32, 1};
inline constexpr DLDataType kI32{kDLInt, 32, 1};
inline constexpr DLDataType kI64{kDLInt, 64, 1};
inline constexpr DLDataType kBool{kDLBool, 8, 1};
inline const float* fdata(const ffi::Tensor& t) { return static_cast<const float*>(t.data_ptr()); }

// Makes libtvm_runtime's symbols available before any bundle library is loaded.
void ensure_tvm_runtime();
// TVM_NUM_THREADS = all logical CPUs unless TVM_NUM_THREADS/OMP_NUM_THREADS is set.
void default_thread_count();

// Returns the free blocks of TVM's pooled allocator to the system. The pool keeps
// every freed block for reuse by a request of the same size only, so the image
// encoder's blocks and the prompt components' blocks (about 1 GB each, full model)
// would otherwise add up.
void release_pooled_memory();

// Thread-safe: a Relax VM keeps per-call state (registers, frames), so each concurrent
// run() takes a VM of its own from a small pool (created on demand, one per thread that
// is running at once); the weights are shared, read only.
class Component {
 public:
  // `device`: where the VM runs (parameters are copied there once, at load).
  Component(const Manifest& manifest, const ComponentSpec& spec, const SafeTensors& weights,
            DLDevice device = DLDevice{kDLCPU, 0});
  // Checks inputs against the manifest (count, dtype, shape, symbolic ranges) and runs.
  // Inputs may live on the host or the device; outputs are host tensors.
  std::vector<ffi::Tensor> run(const std::vector<ffi::Tensor>& inputs) const;
  const ComponentSpec& spec() const { return spec_; }
  std::size_t vm_count() const;  // VMs made so far (the most calls that ran at once)

 private:
  struct Vm {
    ffi::Module module;
    ffi::Function main;
  };
  std::unique_ptr<Vm> make_vm() const;

  ComponentSpec spec_;
  DLDevice device_;
  std::optional<ffi::Module> lib_;  // must outlive every VM
  std::vector<ffi::Tensor> params_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<Vm>> idle_;
  mutable std::size_t vms_ = 0;
};

}  // namespace sam3::detail
