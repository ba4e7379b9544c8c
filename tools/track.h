// `sam3 track`: track objects through a video from clicks, boxes or masks.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace sam3::cli {

struct TrackArgs {
  std::string bundle, video, out_dir, device = "cpu", actions, direction = "both", memory = "spill";
  std::vector<std::string> points, boxes, masks;
  int start = -1, max_frames = -1;
  bool overlay = false, verbose = false;
};

CLI::App* add_track_command(CLI::App& app, TrackArgs& args);
int run_track(const TrackArgs& args);

}  // namespace sam3::cli
