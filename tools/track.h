// `sam3 track`: track objects through a video from clicks, boxes or masks, or every
// instance of a concept (text and/or exemplar box).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace sam3::cli {

struct TrackArgs {
  std::string bundle, video, out_dir, device = "cpu", actions, direction = "both", memory = "spill";
  std::vector<std::string> points, boxes, masks;
  std::vector<std::string> exemplars, options;  // concept: --exemplar, --set NAME=VALUE
  std::string text;
  bool has_text = false;
  double det_threshold = -1, new_det_threshold = -1;  // -1: the bundle's
  int start = -1, max_frames = -1;
  bool overlay = false, verbose = false;
};

CLI::App* add_track_command(CLI::App& app, TrackArgs& args);
int run_track(const TrackArgs& args);

}  // namespace sam3::cli
