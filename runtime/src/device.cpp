#include "device.h"

#include <dlfcn.h>
#ifdef __linux__
#include <link.h>
#endif

#include <mutex>

#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/string.h>

#include "sam3/error.h"

namespace sam3::detail {
namespace ffi = tvm::ffi;

namespace {

// Directory of the libtvm_runtime.so this process uses ("" if unknown).
std::string tvm_runtime_dir() {
#ifndef __linux__
  return "";  // (dlinfo is glibc's; elsewhere the loader's search path is used)
#else
  void* h = dlopen("libtvm_runtime.so", RTLD_LAZY | RTLD_NOLOAD);
  if (!h) return "";
  struct link_map* lm = nullptr;
  std::string dir;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name) {
    std::string path = lm->l_name;
    auto slash = path.rfind('/');
    if (slash != std::string::npos) dir = path.substr(0, slash);
  }
  dlclose(h);
  return dir;
#endif
}

ffi::Function global(const char* name) {
  auto f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) throw Error(std::string("the TVM runtime has no function ") + name);
  return *f;
}

void load_cuda_runtime() {
  std::string dir = tvm_runtime_dir();
  std::string path = (dir.empty() ? "" : dir + "/") + "libtvm_runtime_cuda.so";
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) return;
  std::string why = dlerror();
  std::string hint;
  if (why.find("libcuda.so") != std::string::npos)
    hint = " (no NVIDIA driver: libcuda.so.1 is not installed)";
  else if (why.find("libcudart") != std::string::npos)
    hint = " (the CUDA runtime library libcudart is not installed)";
  throw Error("CUDA could not be initialised: cannot load " + path + ": " + why + hint);
}

}  // namespace

DLDevice parse_device(const std::string& name) {
  if (name == "cpu") return DLDevice{kDLCPU, 0};
  if (name == "cuda") return DLDevice{kDLCUDA, 0};
  if (name == "metal") return DLDevice{kDLMetal, 0};
  throw Error("unknown device '" + name + "'; choose cpu, cuda or metal");
}

std::string device_name(DLDevice dev) {
  switch (dev.device_type) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return "cuda";
    case kDLMetal: return "metal";
    default: return "device type " + std::to_string(static_cast<int>(dev.device_type));
  }
}

void check_bundle_device(const std::string& bundle_device, DLDevice dev) {
  if (bundle_device != device_name(dev))
    throw Error("this bundle was compiled for " + bundle_device + " but --device " +
                device_name(dev) + " was requested; run it with --device " + bundle_device +
                " or recompile it (sam3-tvm compile --target ...)");
}

void check_cpu_precision(const std::string& precision) {
  if (precision != "bf16") return;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512bf16")) return;
#endif
  throw Error("this bundle was compiled with --precision bf16, which needs a CPU with AVX512_BF16 "
              "(this one has none); compile an fp32 bundle for this machine");
}

void ensure_device_runtime(DLDevice dev) {
  if (dev.device_type == kDLCPU) return;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (dev.device_type == kDLCUDA && !ffi::Function::GetGlobal("device_api.cuda").has_value())
    load_cuda_runtime();
  // (Metal: the macOS TVM runtime registers device_api.metal itself.)
  const std::string api = "device_api." + device_name(dev);
  if (!ffi::Function::GetGlobal(api).has_value())
    throw Error("the TVM runtime in this process has no " + device_name(dev) + " support (" +
                api + " is not registered)");
  int exists = 0;
  try {  // kExist = 0
    exists = global("runtime.GetDeviceAttr")(static_cast<int>(dev.device_type), dev.device_id, 0)
                 .cast<int>();
  } catch (const std::exception& e) {
    throw Error(std::string(device_name(dev) == "cuda" ? "CUDA" : device_name(dev)) +
                " could not be initialised: " + e.what());
  }
  if (!exists)
    throw Error(std::string(dev.device_type == kDLCUDA ? "CUDA" : "Metal") +
                " could not be initialised: no GPU found (device " +
                std::to_string(dev.device_id) + ")");
}

ffi::Tensor to_device(const ffi::Tensor& host, DLDevice dev) {
  DLDevice at = host.device();
  if (at.device_type == dev.device_type && at.device_id == dev.device_id) return host;
  static const ffi::Function alloc = global("runtime.TVMTensorAllocWithScope");
  static const ffi::Function copy = global("runtime.TVMTensorCopyFromTo");
  ffi::Shape shape(host.shape().begin(), host.shape().end());
  ffi::Tensor out = alloc(shape, host.dtype(), dev, ffi::Optional<ffi::String>())
                        .cast<ffi::Tensor>();
  copy(host, out);
  return out;
}

void sync_device(DLDevice dev) {
  static const ffi::Function sync = global("runtime.Device_StreamSync");
  // The stream is an integer handle (0 = the default stream), as TVM's Python
  // `Device.sync` passes it; the FFI's type check refuses a void* (seen on the first
  // CUDA run, docs/gpu.md).
  sync(dev, static_cast<int64_t>(0));
}

ffi::Tensor to_host(const ffi::Tensor& t) {
  if (t.device().device_type == kDLCPU) return t;
  ffi::Tensor out = to_device(t, DLDevice{kDLCPU, 0});
  sync_device(t.device());  // the copy is on the default stream
  return out;
}

}  // namespace sam3::detail
