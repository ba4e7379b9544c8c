// Bundle and manifest errors: each bad bundle is refused with a message naming the problem.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "sam3/error.h"
#include "sam3/manifest.h"
#include "sam3/safetensors.h"

namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/sam3_manifest_XXXXXX";
  return mkdtemp(tmpl);
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kManifest = R"json({
  "schema_version": 3,
  "compiler": {"sam3_tvm": "0.1.0", "tvm": "0.27.0.post1"},
  "config": {"name": "tiny", "image_size": 336, "patch_size": 14, "d_model": 32, "num_queries": 20,
             "mask_size": 96, "context_length": 32, "max_boxes": 4, "max_points": 16},
  "weights_source": "random(seed=0)",
  "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
  "tokenizer": {"vocab": "vocab.txt.gz"},
  "weights": "weights.safetensors",
  "sha256": {"text_encoder.so": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", "vocab.txt.gz": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
             "weights.safetensors": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"},
  "components": {"text_encoder": {"library": "text_encoder.so", "function": "main",
    "inputs": [{"name": "token_ids", "shape": [1, 32], "dtype": "int64"}],
    "outputs": [{"name": "text_mask", "shape": [1, 32], "dtype": "bool"}],
    "params": ["w"], "param_shapes": [[2, 3]]},
   "interactive_decoder": {"library": "text_encoder.so", "function": "main",
    "inputs": [{"name": "point_coords", "shape": [1, "num_points", 2], "dtype": "float32"}],
    "outputs": [], "params": [], "param_shapes": [],
    "dims": {"num_points": {"min": 1, "max": 16}}}},
  "tracker": {"image_size": 336, "low_res_mask_size": 96, "input_mask_size": 384, "hidden_dim": 32, "mem_dim": 16, "num_maskmem": 7, "max_cond_frames_in_attn": 4, "keep_first_cond_frame": false, "max_obj_ptrs_in_encoder": 16, "max_memories": 10, "max_pointers": 19, "pointer_slots": 32, "use_memory_selection": true, "mf_threshold": 0.01, "memory_temporal_stride_for_eval": 1, "multimask_output_in_sam": true, "multimask_min_pt_num": 0, "multimask_max_pt_num": 1, "multimask_output_for_tracking": true, "dynamic_multimask_via_stability": true, "dynamic_multimask_stability_delta": 0.05, "dynamic_multimask_stability_thresh": 0.98, "use_multimask_token_for_obj_ptr": true, "sigmoid_scale_for_mem_enc": 20.0, "sigmoid_bias_for_mem_enc": -10.0, "non_overlap_masks_for_mem_enc": false, "max_point_num_in_prompt_enc": 16, "clear_non_cond_mem_around_input": true, "clear_non_cond_mem_for_multi_obj": false, "add_all_frames_to_correct_as_cond": true, "iter_use_prev_mask_pred": true, "output_fill_hole_area": 16},
  "detector": {"score_threshold_detection": 0.5, "det_nms_thresh": 0.1, "new_det_thresh": 0.7, "assoc_iou_thresh": 0.1, "trk_assoc_iou_thresh": 0.5, "o2o_matching_masklets_enable": false, "hotstart_delay": 15, "hotstart_unmatch_thresh": 8, "hotstart_dup_thresh": 8, "suppress_unmatched_only_within_hotstart": true, "init_trk_keep_alive": 30, "max_trk_keep_alive": 30, "min_trk_keep_alive": -1, "decrease_trk_keep_alive_for_empty_masklets": false, "suppress_overlapping_based_on_recent_occlusion_threshold": 0.7, "suppress_det_close_to_boundary": false, "fill_hole_area": 16, "max_num_objects": 10000, "recondition_every_nth_frame": 16, "reconstruction_bbox_iou_thresh": 0.0, "reconstruction_bbox_det_score": 0.0, "masklet_confirmation_enable": false, "masklet_confirmation_consecutive_det_thresh": 3, "use_prev_mem_frame": false, "use_stateless_refinement": false, "refinement_detector_cond_frame_removal_window": 16}
})json";

std::string make_bundle(const std::string& manifest = kManifest) {
  std::string d = temp_dir();
  write(d + "/manifest.json", manifest);
  write(d + "/text_encoder.so", "x");
  write(d + "/vocab.txt.gz", "x");
  write(d + "/weights.safetensors", "x");
  return d;
}

std::string error_of(const std::string& dir) {
  try {
    sam3::load_manifest(dir);
  } catch (const sam3::Error& e) {
    return e.what();
  }
  return "";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

}  // namespace

TEST(Manifest, ParsesAValidBundle) {
  sam3::Manifest m = sam3::load_manifest(make_bundle());
  EXPECT_EQ(m.config_name, "tiny");
  EXPECT_EQ(m.image_size, 336);
  EXPECT_EQ(m.component("text_encoder").params.at(0), "w");
  const auto& pts = m.component("interactive_decoder").inputs.at(0);
  EXPECT_EQ(pts.shape[1], -1);
  EXPECT_EQ(pts.dim_name, "num_points");
  EXPECT_EQ(m.component("interactive_decoder").dims.at("num_points").second, 16);
  EXPECT_THROW(m.component("nope"), sam3::Error);
  EXPECT_EQ(m.tracker.max_pointers, 19);
  EXPECT_EQ(m.tracker.input_mask_size, 384);
  EXPECT_FLOAT_EQ(m.tracker.mf_threshold, 0.01f);
  EXPECT_TRUE(m.tracker.use_memory_selection);
  EXPECT_EQ(m.detector.hotstart_delay, 15);
  EXPECT_FLOAT_EQ(m.detector.new_det_thresh, 0.7f);
}

TEST(Manifest, ImageOnlyBundleOfSchema1AsksForARecompile) {
  // a schema-1 bundle (before the video tracker) has no tracker block
  auto d = make_bundle(replace(kManifest, "\"schema_version\": 3", "\"schema_version\": 1"));
  std::string e = error_of(d);
  EXPECT_NE(e.find("schema version 1 is not supported"), std::string::npos) << e;
  EXPECT_NE(e.find("recompile the bundle"), std::string::npos) << e;
}

TEST(Manifest, InconsistentTrackerBlock) {
  auto d = make_bundle(replace(kManifest, "\"max_pointers\": 19", "\"max_pointers\": 18"));
  EXPECT_NE(error_of(d).find("inconsistent tracker block"), std::string::npos);
}

TEST(Manifest, MissingDirectory) {
  EXPECT_NE(error_of("/nonexistent/bundle").find("bundle directory not found"), std::string::npos);
}

TEST(Manifest, MissingManifest) {
  std::string d = temp_dir();
  EXPECT_NE(error_of(d).find("manifest.json is missing"), std::string::npos);
}

TEST(Manifest, BadJson) {
  EXPECT_NE(error_of(make_bundle("{not json")).find("cannot read"), std::string::npos);
}

TEST(Manifest, OtherSchemaVersion) {
  auto d = make_bundle(replace(kManifest, "\"schema_version\": 3", "\"schema_version\": 7"));
  EXPECT_NE(error_of(d).find("schema version 7 is not supported"), std::string::npos);
}

TEST(Manifest, MissingField) {
  auto d = make_bundle(replace(kManifest, "\"weights\": \"weights.safetensors\",", ""));
  EXPECT_NE(error_of(d).find("malformed"), std::string::npos);
}

TEST(Manifest, MissingLibrary) {
  auto d = make_bundle();
  std::remove((d + "/text_encoder.so").c_str());
  EXPECT_NE(error_of(d).find("bundle file missing: " + d + "/text_encoder.so"), std::string::npos);
}

TEST(Manifest, MissingWeights) {
  auto d = make_bundle();
  std::remove((d + "/weights.safetensors").c_str());
  EXPECT_NE(error_of(d).find("weights.safetensors"), std::string::npos);
}

TEST(Manifest, AbsoluteLibraryPathIsRefused) {
  auto d = make_bundle(replace(kManifest, "\"library\": \"text_encoder.so\"", "\"library\": \"/bin/true\""));
  EXPECT_NE(error_of(d).find("is not a path inside the bundle"), std::string::npos) << error_of(d);
}

TEST(Manifest, DotDotWeightsPathIsRefused) {
  auto d = make_bundle(replace(kManifest, "\"weights\": \"weights.safetensors\"",
                               "\"weights\": \"../weights.safetensors\""));
  EXPECT_NE(error_of(d).find("the weights file '../weights.safetensors' is not a path inside"), std::string::npos)
      << error_of(d);
}

TEST(Manifest, SymlinkOutOfTheBundleIsRefused) {
  auto outside = temp_dir();
  write(outside + "/evil.so", "x");
  auto d = make_bundle();
  std::remove((d + "/text_encoder.so").c_str());
  ASSERT_EQ(symlink((outside + "/evil.so").c_str(), (d + "/text_encoder.so").c_str()), 0);
  EXPECT_NE(error_of(d).find("leads outside the bundle"), std::string::npos) << error_of(d);
}

TEST(Manifest, SymlinkInsideTheBundleIsFine) {
  auto d = make_bundle();
  write(d + "/real_vocab.gz", "x");
  std::remove((d + "/vocab.txt.gz").c_str());
  ASSERT_EQ(symlink("real_vocab.gz", (d + "/vocab.txt.gz").c_str()), 0);
  EXPECT_EQ(error_of(d), "");
}

TEST(Manifest, EveryNamedFileNeedsAHash) {
  auto d = make_bundle(replace(kManifest, "\"vocab.txt.gz\": \"", "\"other.gz\": \""));
  EXPECT_NE(error_of(d).find("no sha256 recorded for vocab.txt.gz"), std::string::npos) << error_of(d);
  d = make_bundle(replace(kManifest, "\"weights.safetensors\": \"2d7", "\"weights.safetensors\": \"2D7"));
  EXPECT_NE(error_of(d).find("not 64 lowercase hex digits"), std::string::npos) << error_of(d);
  d = make_bundle(replace(kManifest, "\"vocab.txt.gz\": \"", "\"../x\": \"" + std::string(64, '0') + "\", \"vocab.txt.gz\": \""));
  EXPECT_NE(error_of(d).find("the hashed file '../x' is not a path inside"), std::string::npos) << error_of(d);
}

TEST(Manifest, Sha256OfKnownVectors) {
  // FIPS 180-2 test vectors
  std::string d = temp_dir();
  write(d + "/abc", "abc");
  EXPECT_EQ(sam3::sha256_file(d + "/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  write(d + "/empty", "");
  EXPECT_EQ(sam3::sha256_file(d + "/empty"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  {  // a million 'a's: more than the 1 MiB read buffer
    std::ofstream(d + "/million") << std::string(1000000, 'a');
  }
  EXPECT_EQ(sam3::sha256_file(d + "/million"), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_THROW(sam3::sha256_file(d + "/missing"), sam3::Error);
}

TEST(Manifest, AChangedFileIsReportedBeforeLoading) {
  auto d = make_bundle();
  sam3::Manifest m = sam3::load_manifest(d);
  EXPECT_NO_THROW(sam3::check_bundle_files(m));
  write(d + "/text_encoder.so", "y");  // one byte changed: a corrupt or swapped library
  try {
    sam3::check_bundle_files(m);
    FAIL() << "a changed library passed the check";
  } catch (const sam3::Error& e) {
    EXPECT_NE(std::string(e.what()).find(d + "/text_encoder.so is corrupt or was replaced"), std::string::npos)
        << e.what();
  }
}

namespace {

// A safetensors file: the 8-byte length, the header text, then `data`.
void write_safetensors(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
}

std::string safetensors_error(const std::string& path) {
  try {
    sam3::SafeTensors st(path);
  } catch (const sam3::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SafeTensors, ReadsTensorsAndRejectsCorruptFiles) {
  std::string d = temp_dir();
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  float values[2] = {1.5f, -2.0f};
  write_safetensors(d + "/ok.safetensors", header, std::string(reinterpret_cast<const char*>(values), 8));
  sam3::SafeTensors st(d + "/ok.safetensors");
  const auto& a = st.get("a");
  ASSERT_EQ(a.shape, std::vector<int64_t>{2});
  float got[2];
  st.read(a, got);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.0f);
  EXPECT_THROW(st.get("b"), sam3::Error);

  write(d + "/short.safetensors", "abc");
  EXPECT_THROW(sam3::SafeTensors(d + "/short.safetensors"), sam3::Error);
  write_safetensors(d + "/trunc.safetensors", header, "");  // header claims more than the file holds
  EXPECT_THROW(sam3::SafeTensors(d + "/trunc.safetensors"), sam3::Error);
  EXPECT_THROW(sam3::SafeTensors(d + "/missing.safetensors"), sam3::Error);
}

// Each damaged header: one clear error naming the problem (never a crash, a huge
// allocation or a silently wrong view).
TEST(SafeTensors, ValidatesOffsetsShapesAndOverlaps) {
  std::string d = temp_dir();
  const std::string data(16, '\1');
  struct Case {
    const char* header;
    const char* expect;  // substring of the error
  } cases[] = {
      {R"([1,2])", "not a JSON object"},
      {R"({"a":3})", "not an object"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", "corrupt header"},
      {R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", "unsupported dtype"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "negative dimension"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "shape too large"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", "disagrees with its shape"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", "outside the data"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "outside the data"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", "outside the data"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       "overlapping tensors (a and b)"},
      {R"({"a":{"dtype":"F32","shape":"x","data_offsets":[0,8]}})", "corrupt header"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", "outside the data"},
      {R"({"a":)", "corrupt header"},
  };
  for (const auto& c : cases) {
    write_safetensors(d + "/bad.safetensors", c.header, data);
    std::string err = safetensors_error(d + "/bad.safetensors");
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.header << " -> '" << err << "'";
  }
  // a length that runs past the end, and one over the format's 100 MB cap
  for (uint64_t n : {uint64_t{1} << 62, uint64_t{200} << 20}) {
    std::ofstream f(d + "/len.safetensors", std::ios::binary);
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << std::string(64, ' ');
    f.close();
    EXPECT_NE(safetensors_error(d + "/len.safetensors").find("corrupt header"), std::string::npos);
  }
  // zero-size tensors may sit anywhere; touching tensors are fine
  write_safetensors(d + "/fine.safetensors",
                    R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U16","shape":[2,2],"data_offsets":[8,16]},)"
                    R"("__metadata__":{"format":"pt"}})",
                    data);
  EXPECT_EQ(safetensors_error(d + "/fine.safetensors"), "");
}

// A weights file cut short after it was opened (a copy still running, a full disk) must
// be an error when its bytes are read, not SIGBUS.
TEST(SafeTensors, FileTruncatedAfterOpeningIsAnError) {
  std::string d = temp_dir();
  const size_t count = 3 * 4096 + 7;
  std::string header = R"({"big":{"dtype":"F32","shape":[)" + std::to_string(count) +
                       R"(],"data_offsets":[0,)" + std::to_string(count * 4) + "]}}";
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.5f - 7.0f;
  const std::string path = d + "/big.safetensors";
  write_safetensors(path, header, std::string(reinterpret_cast<const char*>(values.data()), count * 4));
  sam3::SafeTensors st(path);
  const auto& v = st.get("big");
  std::vector<float> got(count);
  st.read(v, got.data());
  EXPECT_EQ(got, values);
  ASSERT_EQ(truncate(path.c_str(), 8 + static_cast<off_t>(header.size()) + 100), 0);
  try {
    st.read(v, got.data());
    FAIL() << "a read past the new end succeeded";
  } catch (const sam3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated or changed"), std::string::npos) << e.what();
  }
}

