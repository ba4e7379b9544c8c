// `sam3 label`: every instance of a list of classes in a folder (or list) of images, as one
// COCO instances file; resumable.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace sam3::cli {

struct LabelArgs {
  std::string bundle, images, classes, out, device = "cpu";
  double threshold = 0.5;  // as typed (the info block shows 0.3, not 0.30000001)
  bool resume = false;
};

CLI::App* add_label_command(CLI::App& app, LabelArgs& args);
int run_label(const LabelArgs& args);

}  // namespace sam3::cli
