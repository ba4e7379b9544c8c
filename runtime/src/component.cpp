#include "component.h"

#include <algorithm>

#include <condition_variable>

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "device.h"
#include "sam3/error.h"

namespace sam3::detail {
namespace {

struct AlignedAlloc {  // 64-byte aligned host memory, as TVM's own CPU allocator uses
  void AllocData(DLTensor* t) {
    size_t bytes = ffi::GetDataSize(*t);
    t->data = std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
    if (!t->data) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

DLDataType dtype_of(const std::string& name) {
  if (name == "float32") return DLDataType{kDLFloat, 32, 1};
  if (name == "int64") return DLDataType{kDLInt, 64, 1};
  if (name == "int32") return DLDataType{kDLInt, 32, 1};
  if (name == "bool") return DLDataType{kDLBool, 8, 1};
  if (name == "uint16") return DLDataType{kDLUInt, 16, 1};
  throw Error("unsupported dtype in manifest: " + name);
}

ffi::Tensor empty_tensor(const std::vector<int64_t>& shape, DLDataType dtype) {
  return ffi::Tensor::FromNDAlloc(AlignedAlloc(), ffi::Shape(shape.begin(), shape.end()), dtype,
                                  DLDevice{kDLCPU, 0});
}

ffi::Tensor tensor_from(const std::vector<int64_t>& shape, DLDataType dtype, const void* data) {
  ffi::Tensor t = empty_tensor(shape, dtype);
  std::memcpy(t.data_ptr(), data, ffi::GetDataSize(*t.GetDLTensorPtr()));
  return t;
}

size_t numel(const ffi::Tensor& t) {
  size_t n = 1;
  for (int64_t d : t.shape()) n *= static_cast<size_t>(d);
  return n;
}

void default_thread_count() {
  // Every calling thread gets a TVM thread pool of its own, whose idle workers spin
  // (300000 polls by default) before they sleep: with several threads calling one Model,
  // the idle pools' spinning took the cores from the running one (tiny bundle, 2 cores:
  // 2 threads at 0.48x the serial throughput). 1000 polls removes that and changes
  // nothing measurable for one thread (full image encoder 40.3/40.7 s vs 39.9/41.0 s).
  setenv("TVM_THREAD_POOL_SPIN_COUNT", "1000", 0);
  // TVM's thread pool sizes itself on first use from TVM_NUM_THREADS, else from half
  // the logical CPUs on x86 (it assumes SMT siblings): on this project's 2-vCPU
  // machines that is one thread and half the speed. Unless the user chose a count,
  // use every logical CPU, as PyTorch does.
  if (std::getenv("TVM_NUM_THREADS") || std::getenv("OMP_NUM_THREADS")) return;
  unsigned n = std::thread::hardware_concurrency();
  if (n > 0) setenv("TVM_NUM_THREADS", std::to_string(n).c_str(), 0);
}

void ensure_tvm_runtime() {
  // The library is linked with --no-as-needed; this only verifies it is there,
  // so a broken install fails with a message instead of a crash on first call.
  static const bool ok = ffi::Function::GetGlobal("vm.builtin.alloc_storage").has_value();
  if (!ok) throw Error("the TVM runtime (libtvm_runtime.so) is not loaded into this process");
}

void release_pooled_memory() {
  static const auto clear = ffi::Function::GetGlobal("vm.builtin.memory_manager.clear");
  if (clear) (*clear)();
}

Component::Component(const Manifest& manifest, const ComponentSpec& spec, const SafeTensors& weights,
                     DLDevice device)
    : spec_(spec), device_(device) {
  ensure_tvm_runtime();
  const std::string path = manifest.path(spec.library);
  try {
    lib_ = ffi::Module::LoadFromFile(path);
    idle_.push_back(make_vm());  // the first VM now: a broken library fails at load
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("cannot load " + path + " (component " + spec.name + "): " + e.what());
  }
  params_.reserve(spec.params.size());
  for (size_t i = 0; i < spec.params.size(); ++i) {
    const std::string& name = spec.params[i];
    const TensorView& v = weights.get(name);
    // safetensors dtype codes for the manifest's param dtypes
    const std::string& want = spec.param_dtypes[i];
    const std::string st = want == "float32" ? "F32" : want == "uint16" ? "U16" : "";
    if (st.empty()) throw Error("weight " + name + " has unsupported dtype " + want + " in manifest");
    if (v.dtype != st)
      throw Error("weight " + name + " has dtype " + v.dtype + ", expected " + st);
    if (v.shape != spec.param_shapes[i])
      throw Error("weight " + name + " has shape " + shape_str(v.shape) + " but " + spec.library +
                  " was compiled for " + shape_str(spec.param_shapes[i]));
    ffi::Tensor t = empty_tensor(v.shape, dtype_of(want));
    weights.read(v, t.data_ptr());  // straight into the tensor: one copy of the weights at the peak
    params_.push_back(to_device(std::move(t), device_));
  }
}

namespace {

// How many component runs may execute at once in this process. Each calling thread has
// its own TVM thread pool of TVM_NUM_THREADS workers (every logical CPU by default), and
// pools that spin on the same cores slow each other down badly (tiny bundle, 2 cores,
// 4 threads: 0.39x the serial throughput). So at most cores / TVM_NUM_THREADS runs go at
// once (one by default: kernels already use every core; the host work around them still
// overlaps); with TVM_NUM_THREADS=1 that is one run per core. SAM3_CONCURRENT_RUNS sets it.
class RunSlots {
 public:
  static RunSlots& instance() {
    static RunSlots slots;
    return slots;
  }
  void acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return used_ < limit_; });
    ++used_;
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --used_;
    }
    cv_.notify_one();
  }

 private:
  RunSlots() {
    auto env_int = [](const char* name) {
      const char* v = std::getenv(name);
      return v ? std::atoi(v) : 0;
    };
    const int cores = std::max(1u, std::thread::hardware_concurrency());
    int tvm = env_int("TVM_NUM_THREADS");
    if (tvm <= 0) tvm = env_int("OMP_NUM_THREADS");
    if (tvm <= 0) tvm = cores;
    limit_ = env_int("SAM3_CONCURRENT_RUNS");
    if (limit_ <= 0) limit_ = std::max(1, cores / tvm);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int used_ = 0, limit_ = 1;
};

}  // namespace

namespace {

// TVM's allocator kind for the VMs: 2 = pooled (the default, as the Python VM), 1 = naive
// (every tensor malloc'ed and freed). SAM3_VM_ALLOCATOR=naive is for the sanitizer runs:
// a freed tensor then really is freed, so ASan sees a read after free, and TSan sees the
// free where it happens. With the pool a block goes back to TVM's (uninstrumented) pool
// instead, and a VM keeps its last call's outputs (the VM's return register) until its next
// call, possibly on another thread: the last reference is then dropped inside
// libtvm_runtime, whose atomics TSan cannot see, and the block's next user looks racy.
int allocator_kind() {
  static const int kind = [] {
    const char* v = std::getenv("SAM3_VM_ALLOCATOR");
    if (!v || !*v || std::string(v) == "pooled") return 2;
    if (std::string(v) == "naive") return 1;
    throw Error(std::string("SAM3_VM_ALLOCATOR must be pooled or naive, not '") + v + "'");
  }();
  return kind;
}

}  // namespace

std::unique_ptr<Component::Vm> Component::make_vm() const {
  ffi::Module vm = (*lib_)->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  // (device type, device id, allocator kind) per device, as the Python VM does: the
  // compute device, then the CPU as host device for a GPU
  auto init = vm->GetFunction("vm_initialization").value();
  const int kind = allocator_kind();
  if (device_.device_type == kDLCPU)
    init(static_cast<int>(kDLCPU), 0, kind);
  else
    init(static_cast<int>(device_.device_type), device_.device_id, kind, static_cast<int>(kDLCPU), 0, kind);
  auto main = vm->GetFunction(spec_.function);
  if (!main) throw Error(spec_.library + " has no function " + spec_.function);
  ++vms_;
  return std::make_unique<Vm>(Vm{vm, *main});
}

std::size_t Component::vm_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return vms_;
}

std::vector<ffi::Tensor> Component::run(const std::vector<ffi::Tensor>& inputs) const {
  if (inputs.size() != spec_.inputs.size())
    throw Error(spec_.name + " takes " + std::to_string(spec_.inputs.size()) + " inputs, got " +
                std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorSpec& s = spec_.inputs[i];
    DLDataType want = dtype_of(s.dtype), got = inputs[i].dtype();
    std::vector<int64_t> shape(inputs[i].shape().begin(), inputs[i].shape().end());
    bool ok = got.code == want.code && got.bits == want.bits && shape.size() == s.shape.size();
    for (size_t d = 0; ok && d < shape.size(); ++d) {
      if (s.shape[d] >= 0) {
        ok = shape[d] == s.shape[d];
      } else {
        auto r = spec_.dims.at(s.dim_name);
        ok = shape[d] >= r.first && shape[d] <= r.second;
      }
    }
    if (!ok)
      throw Error(spec_.name + "." + s.name + ": got " + shape_str(shape) + ", expected " +
                  shape_str(s.shape) + " " + s.dtype);
  }
  std::vector<ffi::Tensor> on_device;
  on_device.reserve(inputs.size());
  for (const auto& t : inputs) on_device.push_back(to_device(t, device_));
  std::vector<ffi::AnyView> args;
  args.reserve(inputs.size() + params_.size());
  for (const auto& t : on_device) args.emplace_back(t);
  for (const auto& t : params_) args.emplace_back(t);
  // a VM of this call's own, back to the pool when the call ends (also on errors)
  std::unique_ptr<Vm> vm;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      vm = std::move(idle_.back());
      idle_.pop_back();
    } else {
      try {
        vm = make_vm();
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        throw Error(spec_.name + ": cannot make another VM: " + e.what());
      }
    }
  }
  struct Return {
    const Component& c;
    std::unique_ptr<Vm>& vm;
    ~Return() {
      std::lock_guard<std::mutex> lock(c.mu_);
      c.idle_.push_back(std::move(vm));
    }
  } give_back{*this, vm};
  RunSlots::instance().acquire();
  struct Slot {
    ~Slot() { RunSlots::instance().release(); }
  } slot;
  ffi::Any rv;
  try {
    vm->main.CallPacked(args.data(), static_cast<int32_t>(args.size()), &rv);
  } catch (const std::exception& e) {
    throw Error(spec_.name + " failed: " + e.what());
  }
  auto outs = rv.cast<ffi::Array<ffi::Tensor>>();
  std::vector<ffi::Tensor> result;
  for (const auto& t : outs) result.push_back(to_host(t));
  return result;
}

}  // namespace sam3::detail
