// sam3-bench: time the sam3 library on one image, driven line by line on stdin
// so a benchmark harness (`sam3-tvm bench`, bench/gpu_check.py) can interleave it with
// PyTorch runs while the bundle stays loaded.
//
//   sam3-bench --bundle DIR --image FILE [--device cpu|cuda]
//
//   encode                 preprocess + image encoder (caches the image state)
//   text <prompt...>       concept prompt on the cached image state
//   point <x>,<y>          interactive point prompt on the cached image state
//   quit
//
// Each command answers one JSON line on stdout:
//   {"cmd": ..., "seconds": wall time, "stages": {stage: seconds}, "instances": n,
//    "peak_rss_bytes": ...}  or {"error": message}.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "sam3/sam3.h"

namespace {

using Clock = std::chrono::steady_clock;

// This process's own peak RSS. Linux: VmHWM of /proc/self/status. Not getrusage's
// ru_maxrss: Linux starts that at the peak of the image replaced by exec, so a driver
// spawned by `sam3-tvm bench` (a Python process holding the PyTorch model) reported
// the parent's 4.97 GiB whichever bundle it ran.
long long peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // kB
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<long long>(ru.ru_maxrss) * 1024;  // elsewhere (KiB on Linux)
}

nlohmann::json run(sam3::Model& model, const sam3::Image& image,
                   std::optional<sam3::ImageState>& state, const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  std::string rest;
  std::getline(in, rest);
  if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);

  auto t0 = Clock::now();
  size_t instances = 0;
  if (cmd == "encode") {
    state = model.encode(image);
  } else if (cmd == "text" || cmd == "point") {
    if (!state) throw sam3::Error("send 'encode' before '" + cmd + "'");
    if (cmd == "text") {
      sam3::ConceptPrompt p;
      p.text = rest;
      instances = model.segment(*state, p).size();
    } else {
      sam3::InteractivePrompt p;
      float x = 0, y = 0;
      char comma = 0;
      std::istringstream xy(rest);
      if (!(xy >> x >> comma >> y) || comma != ',') throw sam3::Error("bad point '" + rest + "'");
      p.points.push_back({x, y});
      instances = model.segment_interactive(*state, p).size();
    }
  } else {
    throw sam3::Error("unknown command '" + cmd + "' (encode | text <prompt> | point x,y | quit)");
  }
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json stages = nlohmann::json::object();
  for (const auto& [stage, s] : model.timings()) stages[stage] = s;
  return {{"cmd", cmd}, {"seconds", seconds}, {"stages", stages},
          {"instances", instances}, {"peak_rss_bytes", peak_rss_bytes()}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sam3-bench: time the sam3 library, commands on stdin (see the source header)"};
  std::string bundle, image_path, device = "cpu";
  app.add_option("--bundle", bundle, "bundle directory")->required();
  app.add_option("--image", image_path, "image to encode")->required();
  app.add_option("--device", device, "cpu or cuda; must match the bundle's target.device")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    auto t0 = Clock::now();
    sam3::Model model(bundle, device);
    double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
    sam3::Image image = sam3::load_image(image_path);
    std::cout << nlohmann::json{{"ready", true}, {"load_seconds", load_s},
                                {"peak_rss_bytes", peak_rss_bytes()}}
              << std::endl;
    std::optional<sam3::ImageState> state;
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      if (line == "quit") break;
      try {
        std::cout << run(model, image, state, line) << std::endl;
      } catch (const sam3::Error& e) {
        std::cout << nlohmann::json{{"error", e.what()}} << std::endl;
      }
    }
  } catch (const sam3::Error& e) {
    std::cerr << "sam3-bench: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
