// The bundle contract (docs/design.md): manifest.json parsed and checked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sam3 {

constexpr int kBundleSchemaVersion = 1;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // -1 for a symbolic dimension
  std::string dim_name;        // the symbolic dimension's name, if any
  std::string dtype;           // float32, int64, int32, bool
};

struct ComponentSpec {
  std::string name, library, function;
  std::vector<TensorSpec> inputs, outputs;
  std::vector<std::string> params;
  std::vector<std::vector<int64_t>> param_shapes;  // what the compiled code expects
  std::vector<std::string> param_dtypes;  // float32, or uint16 (bf16 bits, bf16 bundles)
  std::map<std::string, std::pair<int64_t, int64_t>> dims;  // symbolic dim -> [min, max]
  std::string objects;  // Metal bundles built off macOS: the objects to link on a Mac
};

struct Manifest {
  std::string dir;
  int schema_version = 0;
  std::string tvm_version, config_name, weights_file, vocab_file, weights_source;
  // target.kind (llvm, cuda, metal), target.device (cpu, cuda, metal), target.precision
  std::string target_kind = "llvm", device = "cpu", precision = "fp32";
  int image_size = 0, mask_size = 0, num_queries = 0, context_length = 0;
  int max_boxes = 0, max_points = 0;
  std::vector<float> mean, std;
  std::map<std::string, ComponentSpec> components;

  const ComponentSpec& component(const std::string& name) const;
  std::string path(const std::string& file) const { return dir + "/" + file; }
};

// Reads <dir>/manifest.json; throws sam3::Error naming the problem (missing
// directory or file, bad JSON, other schema version, missing component files).
Manifest load_manifest(const std::string& dir);

}  // namespace sam3
