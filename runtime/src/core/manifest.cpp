#include "sam3/manifest.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "sam3/error.h"

namespace sam3 {
namespace {

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TensorSpec parse_spec(const nlohmann::json& j) {
  TensorSpec s;
  s.name = j.at("name").get<std::string>();
  s.dtype = j.at("dtype").get<std::string>();
  for (const auto& d : j.at("shape")) {
    if (d.is_string()) {
      s.shape.push_back(-1);
      s.dim_name = d.get<std::string>();
    } else {
      s.shape.push_back(d.get<int64_t>());
    }
  }
  return s;
}

}  // namespace

const ComponentSpec& Manifest::component(const std::string& name) const {
  auto it = components.find(name);
  if (it == components.end()) throw Error("bundle " + dir + " has no component '" + name + "'");
  return it->second;
}

Manifest load_manifest(const std::string& dir) {
  if (!is_dir(dir)) throw Error("bundle directory not found: " + dir);
  Manifest m;
  m.dir = dir;
  const std::string path = dir + "/manifest.json";
  if (!is_file(path)) throw Error("not a bundle: " + path + " is missing");
  nlohmann::json j;
  try {
    std::ifstream in(path);
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error("cannot read " + path + ": " + e.what());
  }
  try {
    m.schema_version = j.at("schema_version").get<int>();
    if (m.schema_version != kBundleSchemaVersion) {
      throw Error("bundle schema version " + std::to_string(m.schema_version) +
                  " is not supported by this runtime (expects " +
                  std::to_string(kBundleSchemaVersion) + "); recompile the bundle");
    }
    m.tvm_version = j.at("compiler").at("tvm").get<std::string>();
    const auto& c = j.at("config");
    m.config_name = c.at("name").get<std::string>();
    m.image_size = c.at("image_size").get<int>();
    m.mask_size = c.at("mask_size").get<int>();
    m.num_queries = c.at("num_queries").get<int>();
    m.context_length = c.at("context_length").get<int>();
    m.max_boxes = c.at("max_boxes").get<int>();
    m.max_points = c.at("max_points").get<int>();
    m.mean = j.at("preprocess").at("mean").get<std::vector<float>>();
    m.std = j.at("preprocess").at("std").get<std::vector<float>>();
    m.weights_file = j.at("weights").get<std::string>();
    m.vocab_file = j.at("tokenizer").at("vocab").get<std::string>();
    m.weights_source = j.value("weights_source", "");
    if (j.contains("target")) {
      const auto& t = j.at("target");
      m.target_kind = t.value("kind", "llvm");
      m.device = t.value("device", m.target_kind == "llvm" ? std::string("cpu") : m.target_kind);
      m.precision = t.value("precision", "fp32");
    }
    for (const auto& [name, e] : j.at("components").items()) {
      ComponentSpec s;
      s.name = name;
      s.library = e.at("library").get<std::string>();
      s.function = e.at("function").get<std::string>();
      for (const auto& x : e.at("inputs")) s.inputs.push_back(parse_spec(x));
      for (const auto& x : e.at("outputs")) s.outputs.push_back(parse_spec(x));
      s.params = e.at("params").get<std::vector<std::string>>();
      s.param_shapes = e.at("param_shapes").get<std::vector<std::vector<int64_t>>>();
      if (s.param_shapes.size() != s.params.size())
        throw Error("malformed " + path + ": component " + name + " lists " +
                    std::to_string(s.params.size()) + " params but " +
                    std::to_string(s.param_shapes.size()) + " shapes");
      s.param_dtypes = e.value("param_dtypes",
                               std::vector<std::string>(s.params.size(), "float32"));
      if (s.param_dtypes.size() != s.params.size())
        throw Error("malformed " + path + ": component " + name + " lists " +
                    std::to_string(s.params.size()) + " params but " +
                    std::to_string(s.param_dtypes.size()) + " param dtypes");
      s.objects = e.value("objects", "");
      if (e.contains("dims")) {
        for (const auto& [d, r] : e.at("dims").items())
          s.dims[d] = {r.at("min").get<int64_t>(), r.at("max").get<int64_t>()};
      }
      m.components[name] = std::move(s);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("malformed " + path + ": " + e.what());
  }
  for (const auto& [name, s] : m.components) {
    if (!is_file(m.path(s.library)) && !s.objects.empty() && is_file(m.path(s.objects)))
      throw Error("bundle file missing: " + m.path(s.library) + " (component " + name +
                  "): this " + m.device + " bundle was built off macOS; link its objects on a "
                  "Mac first (scripts/link-metal-bundle.sh, docs/gpu.md)");
    if (!is_file(m.path(s.library)))
      throw Error("bundle file missing: " + m.path(s.library) + " (component " + name + ")");
  }
  for (const auto& f : {m.weights_file, m.vocab_file}) {
    if (!is_file(m.path(f))) throw Error("bundle file missing: " + m.path(f));
  }
  return m;
}

}  // namespace sam3
