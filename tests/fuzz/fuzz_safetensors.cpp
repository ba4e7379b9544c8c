// The safetensors reader on an arbitrary file: every tensor it accepts can be read back
// in full, inside the file; anything else is a sam3::Error.
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_util.h"
#include "sam3/error.h"
#include "sam3/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch() + "/w.safetensors";
  fuzz::write_file(path, data, size);
  try {
    sam3::SafeTensors st(path);
    for (const auto& [name, v] : st.tensors()) {
      if (v.offset + v.nbytes > size) abort();  // accepted bytes past the end of the file
      auto bytes = st.read(v);
      if (bytes.size() != v.nbytes) abort();
      if (v.nbytes && bytes[0] != data[v.offset]) abort();
    }
  } catch (const sam3::Error&) {
  }
  return 0;
}
