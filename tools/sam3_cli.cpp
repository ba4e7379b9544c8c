// sam3: segment images with a compiled SAM 3 bundle (no Python, no PyTorch).
#include <csignal>
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli_util.h"
#include "label.h"
#include "outputs.h"
#include "serve/serve.h"
#include "sam3/sam3.h"
#include "track.h"

namespace {

using sam3::cli::number;
using sam3::cli::split;

bool sign(const std::vector<std::string>& parts, size_t n, const std::string& what,
          const std::string& arg) {
  if (parts.size() == n) return true;
  if (parts.size() == n + 1 && (parts[n] == "pos" || parts[n] == "neg")) return parts[n] == "pos";
  throw sam3::Error("bad " + what + " '" + arg + "'");
}

sam3::Box parse_box(const std::string& arg) {
  auto p = split(arg);
  if (p.size() < 4) throw sam3::Error("bad box '" + arg + "': expected x0,y0,x1,y1[,pos|neg]");
  sam3::Box b{number(p[0], "box"), number(p[1], "box"), number(p[2], "box"), number(p[3], "box")};
  b.positive = sign(p, 4, "box (expected x0,y0,x1,y1[,pos|neg])", arg);
  return b;
}

sam3::Point parse_point(const std::string& arg) {
  auto p = split(arg);
  if (p.size() < 2) throw sam3::Error("bad point '" + arg + "': expected x,y[,pos|neg]");
  sam3::Point pt{number(p[0], "point"), number(p[1], "point")};
  pt.positive = sign(p, 2, "point (expected x,y[,pos|neg])", arg);
  return pt;
}

void print_timings(const sam3::Model& model, double load_s) {
  std::fprintf(stderr, "  %-16s %8d\n", "threads", model.num_threads());
  std::fprintf(stderr, "  %-16s %8.1f ms\n", "load bundle", load_s * 1e3);
  for (const auto& [stage, s] : model.timings())
    std::fprintf(stderr, "  %-16s %8.1f ms\n", stage.c_str(), s * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  // a write past `ulimit -f` then fails with EFBIG (one clear error, staging removed)
  // instead of killing the process with SIGXFSZ and leaving a partial file
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"sam3: SAM 3 segmentation with a compiled TVM bundle"};
  app.require_subcommand(1);

  std::string bundle, image_path, text, out_dir, device = "cpu";
  std::vector<std::string> boxes, points;
  float threshold = 0.5f;
  bool verbose = false, single_mask = false;

  auto* seg = app.add_subcommand("segment", "segment an image by text, exemplar boxes or points");
  seg->add_option("--bundle", bundle, "bundle directory (sam3-tvm compile --out)")->required();
  seg->add_option("--image", image_path, "PNG or JPEG image")->required();
  seg->add_option("--text", text, "concept prompt, e.g. \"red car\"");
  seg->add_option("--box", boxes, "x0,y0,x1,y1[,pos|neg] in pixels: an exemplar box (with --point: the interactive box)");
  seg->add_option("--point", points, "x,y[,pos|neg] in pixels: an interactive click");
  seg->add_option("--threshold", threshold, "score threshold for concept prompts")->default_val(0.5f);
  seg->add_flag("--single-mask", single_mask, "interactive: the single-mask output instead of the best of 3");
  seg->add_option("--out", out_dir, "output directory")->required();
  seg->add_flag("--verbose,-v", verbose, "print the time per stage");
  seg->add_option("--device", device, "cpu or cuda (metal: untested); must match the bundle's "
                  "target (sam3 info)")->default_val("cpu");

  sam3::cli::TrackArgs track_args;
  auto* track = sam3::cli::add_track_command(app, track_args);

  sam3::cli::LabelArgs label_args;
  auto* label = sam3::cli::add_label_command(app, label_args);

  sam3::cli::ServeArgs serve_args;
  auto* serve = sam3::cli::add_serve_command(app, serve_args);

  auto* info = app.add_subcommand("info", "describe a bundle");
  info->add_option("--bundle", bundle, "bundle directory")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (track->parsed()) return sam3::cli::run_track(track_args);
    if (serve->parsed()) return sam3::cli::run_serve(serve_args);
    if (label->parsed()) return sam3::cli::run_label(label_args);
    if (info->parsed()) {
      sam3::Manifest m = sam3::load_manifest(bundle);
      std::printf("bundle      %s\nconfig      %s (image %d, masks %d, %d queries)\n"
                  "weights     %s\ncompiled by TVM %s\ntarget      %s (device %s, %s)\n"
                  "components ", bundle.c_str(), m.config_name.c_str(), m.image_size, m.mask_size,
                  m.num_queries, m.weights_source.c_str(), m.tvm_version.c_str(),
                  m.target_kind.c_str(), m.device.c_str(), m.precision.c_str());
      for (const auto& [name, c] : m.components) std::printf(" %s", name.c_str());
      std::printf("\n");
      return 0;
    }
    if (text.empty() && boxes.empty() && points.empty())
      throw sam3::Error("give a prompt: --text, --box or --point");
    if (!text.empty() && text.find_first_not_of(" \t\r\n") == std::string::npos)
      throw sam3::Error("empty text prompt");
    auto t0 = std::chrono::steady_clock::now();
    sam3::Image image = sam3::load_image(image_path);
    sam3::Model model(bundle, device);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sam3::ImageState state = model.encode(image);
    std::vector<sam3::Instance> found;
    nlohmann::json prompt = {{"text", text}, {"boxes", boxes}, {"points", points}};
    if (!points.empty()) {
      sam3::InteractivePrompt p;
      for (const auto& s : points) p.points.push_back(parse_point(s));
      if (boxes.size() > 1 || !text.empty())
        throw sam3::Error("point prompts take at most one box and no text");
      if (boxes.size() == 1) p.box = parse_box(boxes[0]);
      p.multimask = !single_mask;
      found = model.segment_interactive(state, p);
    } else {
      sam3::ConceptPrompt p;
      p.text = text;
      for (const auto& s : boxes) p.boxes.push_back(parse_box(s));
      p.threshold = threshold;
      prompt["threshold"] = threshold;
      found = model.segment(state, p);
    }
    std::string path = sam3::cli::write_outputs(out_dir, image, found, prompt);
    std::printf("%zu instance(s); wrote %s\n", found.size(), path.c_str());
    if (verbose) print_timings(model, load_s);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sam3: error: %s\n", e.what());
    return 1;
  }
}
