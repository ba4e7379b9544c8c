// The manifest reader (sam3::load_manifest) on arbitrary manifest.json text in a bundle
// folder that holds the files the seeds name: a Manifest or a sam3::Error.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "sam3/error.h"
#include "sam3/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch() + "/bundle";
    mkdir(d.c_str(), 0700);
    for (const char* f : {"text_encoder.so", "vocab.txt.gz", "weights.safetensors", "image_encoder.so",
                          "bpe_simple_vocab_16e6.txt.gz"})
      fuzz::write_file(d + "/" + f, reinterpret_cast<const uint8_t*>("x"), 1);
    return d;
  }();
  fuzz::write_file(dir + "/manifest.json", data, size);
  try {
    sam3::Manifest m = sam3::load_manifest(dir);
    for (const auto& [name, c] : m.components) (void)m.component(name);
  } catch (const sam3::Error&) {
  }
  return 0;
}
