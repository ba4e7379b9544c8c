// The bundle contract (docs/design.md): manifest.json parsed and checked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sam3 {

constexpr int kBundleSchemaVersion = 3;  // 2: video tracker components and `tracker`; 3: `sha256`

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

// The video tracker's constants, read by the compiler from the official model
// (manifest `tracker` block, compiler/sam3_tvm/model/tracker_config.py).
struct TrackerConfig {
  int image_size = 0, low_res_mask_size = 0, input_mask_size = 0, hidden_dim = 0, mem_dim = 0;
  int num_maskmem = 7, max_cond_frames_in_attn = 4, max_obj_ptrs_in_encoder = 16;
  int max_memories = 10, max_pointers = 19, pointer_slots = 32;  // slots: compiled pointer inputs
  bool keep_first_cond_frame = false, use_memory_selection = true;
  float mf_threshold = 0.01f;
  int memory_temporal_stride_for_eval = 1;
  bool multimask_output_in_sam = true, multimask_output_for_tracking = true;
  int multimask_min_pt_num = 0, multimask_max_pt_num = 1;
  bool dynamic_multimask_via_stability = true, use_multimask_token_for_obj_ptr = true;
  float dynamic_multimask_stability_delta = 0.05f, dynamic_multimask_stability_thresh = 0.98f;
  float sigmoid_scale_for_mem_enc = 20.f, sigmoid_bias_for_mem_enc = -10.f;
  bool non_overlap_masks_for_mem_enc = false;
  int max_point_num_in_prompt_enc = 16;
  bool clear_non_cond_mem_around_input = true, clear_non_cond_mem_for_multi_obj = false;
  bool add_all_frames_to_correct_as_cond = true, iter_use_prev_mask_pred = true;
  int output_fill_hole_area = 16;
};

// Concept tracking's thresholds and switches, read by the compiler from the official video
// model (manifest `detector` block, compiler/sam3_tvm/model/concept_config.py). Defaults
// that the API and CLI let users override.
struct DetectorConfig {
  float score_threshold_detection = 0.5f, det_nms_thresh = 0.1f, new_det_thresh = 0.7f;
  float assoc_iou_thresh = 0.1f, trk_assoc_iou_thresh = 0.5f;
  bool o2o_matching_masklets_enable = false;
  int hotstart_delay = 15, hotstart_unmatch_thresh = 8, hotstart_dup_thresh = 8;
  bool suppress_unmatched_only_within_hotstart = true;
  int init_trk_keep_alive = 30, max_trk_keep_alive = 30, min_trk_keep_alive = -1;
  bool decrease_trk_keep_alive_for_empty_masklets = false;
  float suppress_overlapping_based_on_recent_occlusion_threshold = 0.7f;
  bool suppress_det_close_to_boundary = false;
  int fill_hole_area = 16, max_num_objects = 10000, recondition_every_nth_frame = 16;
  float reconstruction_bbox_iou_thresh = 0.f, reconstruction_bbox_det_score = 0.f;
  bool masklet_confirmation_enable = false;
  int masklet_confirmation_consecutive_det_thresh = 3;
  bool use_prev_mem_frame = false, use_stateless_refinement = false;
  int refinement_detector_cond_frame_removal_window = 16;
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
  TrackerConfig tracker;
  DetectorConfig detector;
  // SHA-256 (lowercase hex) of every file the manifest names, keyed by its path in the
  // bundle: libraries (and Metal objects), weights, vocabulary.
  std::map<std::string, std::string> sha256;

  const ComponentSpec& component(const std::string& name) const;
  std::string path(const std::string& file) const { return dir + "/" + file; }
};

// Reads <dir>/manifest.json; throws sam3::Error naming the problem (missing
// directory or file, bad JSON, other schema version, missing component files).
Manifest load_manifest(const std::string& dir);

// Hashes every file listed in m.sha256 and compares: throws sam3::Error naming the first
// file whose content differs ("corrupt or replaced"). Catches corruption (a flipped
// byte, a truncated copy, a library swapped for another build), not malice: whoever can
// write the bundle can write its manifest too (docs/design.md, "Trust"). The runtime calls
// it before it opens any of the files.
void check_bundle_files(const Manifest& m);
// The same for one file of m.sha256 (its path in the bundle).
void check_bundle_file(const Manifest& m, const std::string& file);

// Lowercase hex SHA-256 of a file's bytes; throws sam3::Error if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace sam3
