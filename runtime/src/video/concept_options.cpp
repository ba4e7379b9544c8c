#include "video/concept_options.h"

#include <cmath>
#include <sstream>

#include "sam3/error.h"

namespace sam3 {
namespace video {
namespace {

enum class Kind { Probability, Count, SignedCount, Switch, Unsupported };

struct Option {
  const char* name;
  Kind kind;
  float DetectorConfig::*f = nullptr;
  int DetectorConfig::*i = nullptr;
  bool DetectorConfig::*b = nullptr;
};

const std::vector<Option>& options() {
  using D = DetectorConfig;
  static const std::vector<Option> o = {
      {"score_threshold_detection", Kind::Probability, &D::score_threshold_detection},
      {"det_nms_thresh", Kind::Probability, &D::det_nms_thresh},
      {"new_det_thresh", Kind::Probability, &D::new_det_thresh},
      {"assoc_iou_thresh", Kind::Probability, &D::assoc_iou_thresh},
      {"trk_assoc_iou_thresh", Kind::Probability, &D::trk_assoc_iou_thresh},
      {"suppress_overlapping_based_on_recent_occlusion_threshold", Kind::Probability,
       &D::suppress_overlapping_based_on_recent_occlusion_threshold},
      {"reconstruction_bbox_iou_thresh", Kind::Probability, &D::reconstruction_bbox_iou_thresh},
      {"reconstruction_bbox_det_score", Kind::Probability, &D::reconstruction_bbox_det_score},
      {"hotstart_delay", Kind::Count, nullptr, &D::hotstart_delay},
      {"hotstart_unmatch_thresh", Kind::Count, nullptr, &D::hotstart_unmatch_thresh},
      {"hotstart_dup_thresh", Kind::Count, nullptr, &D::hotstart_dup_thresh},
      {"init_trk_keep_alive", Kind::SignedCount, nullptr, &D::init_trk_keep_alive},
      {"max_trk_keep_alive", Kind::SignedCount, nullptr, &D::max_trk_keep_alive},
      {"min_trk_keep_alive", Kind::SignedCount, nullptr, &D::min_trk_keep_alive},
      {"fill_hole_area", Kind::Count, nullptr, &D::fill_hole_area},
      {"max_num_objects", Kind::Count, nullptr, &D::max_num_objects},
      {"recondition_every_nth_frame", Kind::Count, nullptr, &D::recondition_every_nth_frame},
      {"masklet_confirmation_consecutive_det_thresh", Kind::Count, nullptr,
       &D::masklet_confirmation_consecutive_det_thresh},
      {"refinement_detector_cond_frame_removal_window", Kind::Count, nullptr,
       &D::refinement_detector_cond_frame_removal_window},
      {"suppress_unmatched_only_within_hotstart", Kind::Switch, nullptr, nullptr,
       &D::suppress_unmatched_only_within_hotstart},
      {"decrease_trk_keep_alive_for_empty_masklets", Kind::Switch, nullptr, nullptr,
       &D::decrease_trk_keep_alive_for_empty_masklets},
      {"suppress_det_close_to_boundary", Kind::Switch, nullptr, nullptr, &D::suppress_det_close_to_boundary},
      {"masklet_confirmation_enable", Kind::Switch, nullptr, nullptr, &D::masklet_confirmation_enable},
      // switches of the official model this runtime does not implement (off in the
      // shipped model): only their default is accepted
      {"o2o_matching_masklets_enable", Kind::Unsupported, nullptr, nullptr, &D::o2o_matching_masklets_enable},
      {"use_prev_mem_frame", Kind::Unsupported, nullptr, nullptr, &D::use_prev_mem_frame},
      {"use_stateless_refinement", Kind::Unsupported, nullptr, nullptr, &D::use_stateless_refinement},
  };
  return o;
}

std::string str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

std::vector<std::string> concept_option_names() {
  std::vector<std::string> n;
  for (const Option& o : options())
    if (o.kind != Kind::Unsupported) n.push_back(o.name);
  return n;
}

void apply_concept_options(DetectorConfig& cfg, const std::map<std::string, double>& overrides) {
  for (const auto& [name, v] : overrides) {
    const Option* opt = nullptr;
    for (const Option& o : options())
      if (name == o.name) opt = &o;
    if (!opt) {
      std::string known;
      for (const std::string& n : concept_option_names()) known += (known.empty() ? "" : ", ") + n;
      throw Error("unknown concept-tracking option '" + name + "'; known: " + known);
    }
    const std::string what = "concept-tracking option " + name + "=" + str(v);
    if (!std::isfinite(v)) throw Error(what + ": not a number");
    switch (opt->kind) {
      case Kind::Probability:
        if (v < 0.0 || v > 1.0) throw Error(what + ": must be in [0, 1]");
        cfg.*(opt->f) = static_cast<float>(v);
        break;
      case Kind::Count:
      case Kind::SignedCount:
        if (v != std::floor(v) || std::fabs(v) > 1e9) throw Error(what + ": must be a whole number");
        if (opt->kind == Kind::Count && v < 0) throw Error(what + ": must be >= 0");
        cfg.*(opt->i) = static_cast<int>(v);
        break;
      case Kind::Switch:
        if (v != 0.0 && v != 1.0) throw Error(what + ": must be 0 or 1");
        cfg.*(opt->b) = v != 0.0;
        break;
      case Kind::Unsupported:
        if ((v != 0.0) != (cfg.*(opt->b))) throw Error(what + ": not supported by this runtime");
        break;
    }
  }
  if (cfg.masklet_confirmation_consecutive_det_thresh < 1)
    throw Error("concept-tracking option masklet_confirmation_consecutive_det_thresh must be >= 1");
  if (cfg.hotstart_delay > 0 &&
      std::max(cfg.hotstart_unmatch_thresh, cfg.hotstart_dup_thresh) > cfg.hotstart_delay)
    throw Error("concept-tracking options: hotstart_unmatch_thresh and hotstart_dup_thresh must be <= "
                "hotstart_delay (" + std::to_string(cfg.hotstart_delay) + ")");
  if (cfg.o2o_matching_masklets_enable || cfg.use_prev_mem_frame || cfg.use_stateless_refinement)
    throw Error("this bundle's concept tracking uses options this runtime does not implement "
                "(o2o_matching_masklets_enable, use_prev_mem_frame or use_stateless_refinement)");
}

}  // namespace video
}  // namespace sam3
