// The device helpers' TVM calls, on the CPU. The GPU-only paths call the same registered
// TVM functions with the same argument types, so a signature the FFI refuses (the first
// CUDA run found `runtime.Device_StreamSync` given a void* stream) fails here too,
// without a GPU.
#include <gtest/gtest.h>

#include <tvm/ffi/container/tensor.h>

#include "device.h"

namespace d = sam3::detail;

TEST(Device, SyncTakesTheDefaultStream) {
  EXPECT_NO_THROW(d::sync_device(DLDevice{kDLCPU, 0}));
}

TEST(Device, ParseAndName) {
  EXPECT_EQ(d::parse_device("cuda").device_type, kDLCUDA);
  EXPECT_EQ(d::device_name(DLDevice{kDLCPU, 0}), "cpu");
  EXPECT_THROW(d::parse_device("tpu"), std::exception);
}
