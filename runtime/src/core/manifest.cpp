#include "sam3/manifest.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <type_traits>
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

TrackerConfig parse_tracker(const nlohmann::json& t) {
  TrackerConfig c;
  auto get = [&](const char* key, auto& field) { field = t.at(key).get<std::decay_t<decltype(field)>>(); };
  get("image_size", c.image_size);
  get("low_res_mask_size", c.low_res_mask_size);
  get("input_mask_size", c.input_mask_size);
  get("hidden_dim", c.hidden_dim);
  get("mem_dim", c.mem_dim);
  get("num_maskmem", c.num_maskmem);
  get("max_cond_frames_in_attn", c.max_cond_frames_in_attn);
  get("keep_first_cond_frame", c.keep_first_cond_frame);
  get("max_obj_ptrs_in_encoder", c.max_obj_ptrs_in_encoder);
  get("max_memories", c.max_memories);
  get("max_pointers", c.max_pointers);
  get("pointer_slots", c.pointer_slots);
  get("use_memory_selection", c.use_memory_selection);
  get("mf_threshold", c.mf_threshold);
  get("memory_temporal_stride_for_eval", c.memory_temporal_stride_for_eval);
  get("multimask_output_in_sam", c.multimask_output_in_sam);
  get("multimask_min_pt_num", c.multimask_min_pt_num);
  get("multimask_max_pt_num", c.multimask_max_pt_num);
  get("multimask_output_for_tracking", c.multimask_output_for_tracking);
  get("dynamic_multimask_via_stability", c.dynamic_multimask_via_stability);
  get("dynamic_multimask_stability_delta", c.dynamic_multimask_stability_delta);
  get("dynamic_multimask_stability_thresh", c.dynamic_multimask_stability_thresh);
  get("use_multimask_token_for_obj_ptr", c.use_multimask_token_for_obj_ptr);
  get("sigmoid_scale_for_mem_enc", c.sigmoid_scale_for_mem_enc);
  get("sigmoid_bias_for_mem_enc", c.sigmoid_bias_for_mem_enc);
  get("non_overlap_masks_for_mem_enc", c.non_overlap_masks_for_mem_enc);
  get("max_point_num_in_prompt_enc", c.max_point_num_in_prompt_enc);
  get("clear_non_cond_mem_around_input", c.clear_non_cond_mem_around_input);
  get("clear_non_cond_mem_for_multi_obj", c.clear_non_cond_mem_for_multi_obj);
  get("add_all_frames_to_correct_as_cond", c.add_all_frames_to_correct_as_cond);
  get("iter_use_prev_mask_pred", c.iter_use_prev_mask_pred);
  get("output_fill_hole_area", c.output_fill_hole_area);
  // the session's fixed-size buffers and index tables rely on these
  if (c.num_maskmem < 2 || c.max_cond_frames_in_attn < 2 || c.max_obj_ptrs_in_encoder < 1 ||
      c.max_memories != c.max_cond_frames_in_attn + c.num_maskmem - 1 ||
      c.max_pointers != c.max_cond_frames_in_attn + c.max_obj_ptrs_in_encoder - 1 ||
      c.pointer_slots < c.max_pointers ||
      c.memory_temporal_stride_for_eval < 1 || c.mem_dim <= 0 || c.hidden_dim % c.mem_dim != 0)
    throw Error("inconsistent tracker block");
  return c;
}

DetectorConfig parse_detector(const nlohmann::json& t) {
  DetectorConfig c;
  auto get = [&](const char* key, auto& field) { field = t.at(key).get<std::decay_t<decltype(field)>>(); };
  get("score_threshold_detection", c.score_threshold_detection);
  get("det_nms_thresh", c.det_nms_thresh);
  get("new_det_thresh", c.new_det_thresh);
  get("assoc_iou_thresh", c.assoc_iou_thresh);
  get("trk_assoc_iou_thresh", c.trk_assoc_iou_thresh);
  get("o2o_matching_masklets_enable", c.o2o_matching_masklets_enable);
  get("hotstart_delay", c.hotstart_delay);
  get("hotstart_unmatch_thresh", c.hotstart_unmatch_thresh);
  get("hotstart_dup_thresh", c.hotstart_dup_thresh);
  get("suppress_unmatched_only_within_hotstart", c.suppress_unmatched_only_within_hotstart);
  get("init_trk_keep_alive", c.init_trk_keep_alive);
  get("max_trk_keep_alive", c.max_trk_keep_alive);
  get("min_trk_keep_alive", c.min_trk_keep_alive);
  get("decrease_trk_keep_alive_for_empty_masklets", c.decrease_trk_keep_alive_for_empty_masklets);
  get("suppress_overlapping_based_on_recent_occlusion_threshold",
      c.suppress_overlapping_based_on_recent_occlusion_threshold);
  get("suppress_det_close_to_boundary", c.suppress_det_close_to_boundary);
  get("fill_hole_area", c.fill_hole_area);
  get("max_num_objects", c.max_num_objects);
  get("recondition_every_nth_frame", c.recondition_every_nth_frame);
  get("reconstruction_bbox_iou_thresh", c.reconstruction_bbox_iou_thresh);
  get("reconstruction_bbox_det_score", c.reconstruction_bbox_det_score);
  get("masklet_confirmation_enable", c.masklet_confirmation_enable);
  get("masklet_confirmation_consecutive_det_thresh", c.masklet_confirmation_consecutive_det_thresh);
  get("use_prev_mem_frame", c.use_prev_mem_frame);
  get("use_stateless_refinement", c.use_stateless_refinement);
  get("refinement_detector_cond_frame_removal_window", c.refinement_detector_cond_frame_removal_window);
  return c;
}

// A file the manifest names must lie inside the bundle: a relative path without "..",
// and, with symlinks resolved, still under the bundle directory (a bundle is native code
// the process loads; see docs/design.md, "Trust").
void check_confined(const std::string& dir, const std::string& file, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path p(file);
  bool bad = file.empty() || p.is_absolute() || p.has_root_name();
  for (const auto& part : p) bad = bad || part == "..";
  if (bad)
    throw Error("bundle " + dir + ": " + what + " '" + file +
                "' is not a path inside the bundle (absolute or with '..'); refused");
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  const fs::path full = fs::weakly_canonical(fs::path(dir) / p, ec);
  if (ec) return;  // a missing file is reported by the caller
  auto r = root.begin();
  auto f = full.begin();
  for (; r != root.end() && f != full.end() && *r == *f; ++r, ++f) {
  }
  if (r != root.end())
    throw Error("bundle " + dir + ": " + what + " '" + file + "' leads outside the bundle (to " +
                full.string() + "); refused");
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
    m.tracker = parse_tracker(j.at("tracker"));
    m.detector = parse_detector(j.at("detector"));
    for (const auto& [file, digest] : j.at("sha256").items()) {
      std::string hex = digest.get<std::string>();
      if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw Error("malformed " + path + ": sha256 of " + file + " is not 64 lowercase hex digits");
      m.sha256[file] = std::move(hex);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("malformed " + path + ": " + e.what());
  }
  for (const auto& [name, s] : m.components) {
    check_confined(dir, s.library, "the library of component " + name);
    if (!s.objects.empty()) check_confined(dir, s.objects, "the objects of component " + name);
  }
  check_confined(dir, m.weights_file, "the weights file");
  check_confined(dir, m.vocab_file, "the tokenizer vocabulary");
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
  std::vector<std::string> named = {m.weights_file, m.vocab_file};
  for (const auto& [name, s] : m.components) named.push_back(s.library);
  for (const auto& f : named)
    if (!m.sha256.count(f)) throw Error("malformed " + path + ": no sha256 recorded for " + f);
  for (const auto& [f, digest] : m.sha256) check_confined(dir, f, "the hashed file");
  return m;
}

void check_bundle_file(const Manifest& m, const std::string& file) {
  auto it = m.sha256.find(file);
  if (it == m.sha256.end()) throw Error("bundle " + m.dir + ": no sha256 recorded for " + file);
  if (sha256_file(m.path(file)) != it->second)
    throw Error("bundle file " + m.path(file) + " is corrupt or was replaced: its SHA-256 differs from "
                "the one in manifest.json; copy or compile the bundle again");
}

void check_bundle_files(const Manifest& m) {
  for (const auto& [file, digest] : m.sha256) check_bundle_file(m, file);
}

}  // namespace sam3
