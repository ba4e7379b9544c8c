// stress_threads: one sam3::Model used from many threads at once (issue 12). Every thread
// runs a mix of calls (encode; concept prompt; interactive click; interactive box) and
// compares each result with the same call made serially first; then the same number of
// calls is timed from one thread and from THREADS threads. Prints JSON; exits 1 on any
// mismatch or error. Not installed.
//
//   stress_threads BUNDLE IMAGE THREADS CALLS_PER_THREAD [FRAMES_DIR]
// With FRAMES_DIR every thread also runs its own VideoSession on the frames (a box on
// frame 0, 4 frames forward), compared with a serial session.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sam3/image.h"
#include "sam3/sam3.h"
#include "sam3/video.h"

namespace {

struct Result {
  std::vector<float> scores;
  std::vector<std::vector<uint8_t>> masks;
  bool operator==(const Result& o) const { return scores == o.scores && masks == o.masks; }
};

Result run(sam3::Model& model, const sam3::Image& img, int kind) {
  sam3::ImageState st = model.encode(img);
  std::vector<sam3::Instance> out;
  if (kind == 0) {
    sam3::ConceptPrompt p;
    p.text = "a red square";
    p.threshold = 0.0f;  // random weights: keep everything
    out = model.segment(st, p);
  } else {
    sam3::InteractivePrompt p;
    if (kind == 1) p.points = {{img.width * 0.3f, img.height * 0.4f}, {img.width * 0.7f, img.height * 0.6f, false}};
    else p.box = sam3::Box{img.width * 0.2f, img.height * 0.2f, img.width * 0.6f, img.height * 0.7f};
    out = model.segment_interactive(st, p);
  }
  Result r;
  for (const auto& i : out) {
    r.scores.push_back(i.score);
    r.masks.push_back(i.mask);
  }
  return r;
}

std::vector<std::vector<uint8_t>> track(sam3::Model& model, const std::string& frames) {
  sam3::VideoSession v(model, frames);
  v.add_box(0, 1, sam3::Box{v.width() * 0.2f, v.height() * 0.2f, v.width() * 0.6f, v.height() * 0.7f});
  std::vector<std::vector<uint8_t>> masks;
  v.propagate({sam3::Direction::Forward, 0, 3}, [&](const sam3::VideoFrameResult& r) {
    for (const auto& o : r.objects) masks.push_back(o.mask);
    return true;
  });
  return masks;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: stress_threads BUNDLE IMAGE THREADS CALLS_PER_THREAD [FRAMES_DIR]\n");
    return 2;
  }
  try {
    const int threads = std::atoi(argv[3]), calls = std::atoi(argv[4]);
    sam3::Model model(argv[1]);
    const sam3::Image img = sam3::load_image(argv[2]);
    constexpr int kKinds = 3;
    std::vector<Result> expected;
    for (int k = 0; k < kKinds; ++k) expected.push_back(run(model, img, k));

    // the same calls from one thread, timed
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < threads * calls; ++i) run(model, img, i % kKinds);
    const double serial_s = seconds_since(t0);

    const std::string frames = argc == 6 ? argv[5] : "";
    std::vector<std::vector<uint8_t>> expected_track;
    if (!frames.empty()) expected_track = track(model, frames);

    std::atomic<int> mismatches{0}, errors{0}, video_mismatches{0};
    std::vector<std::string> messages(threads);
    t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        try {
          for (int i = 0; i < calls; ++i) {
            const int kind = (t + i) % kKinds;
            if (!(run(model, img, kind) == expected[kind])) ++mismatches;
          }
          if (!frames.empty() && track(model, frames) != expected_track) ++video_mismatches;
        } catch (const std::exception& e) {
          ++errors;
          messages[t] = e.what();
        }
      });
    for (auto& th : pool) th.join();
    const double parallel_s = seconds_since(t0);
    nlohmann::json out = {{"threads", threads}, {"calls", threads * calls}, {"mismatches", mismatches.load()},
                          {"errors", errors.load()}, {"video_mismatches", video_mismatches.load()}, {"video_sessions", frames.empty() ? 0 : threads},
                          {"serial_s", serial_s}, {"parallel_s", parallel_s},
                          {"tvm_threads", model.num_threads()}, {"messages", messages}};
    std::printf("%s\n", out.dump().c_str());
    return mismatches || errors || video_mismatches ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stress_threads: error: %s\n", e.what());
    return 1;
  }
}
