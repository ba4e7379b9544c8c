// stress_threads: one sam3::Model used from many threads at once (issue 12). Every thread
// runs a mix of calls (encode; concept prompt; interactive click; interactive box) and
// compares each result with the same call made serially first; then the same number of
// calls is timed from one thread and from THREADS threads. Prints JSON; exits 1 on any
// mismatch or error. Not installed.
//
//   stress_threads BUNDLE IMAGE THREADS CALLS_PER_THREAD
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: stress_threads BUNDLE IMAGE THREADS CALLS_PER_THREAD\n");
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

    std::atomic<int> mismatches{0}, errors{0};
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
        } catch (const std::exception& e) {
          ++errors;
          messages[t] = e.what();
        }
      });
    for (auto& th : pool) th.join();
    const double parallel_s = seconds_since(t0);
    nlohmann::json out = {{"threads", threads}, {"calls", threads * calls}, {"mismatches", mismatches.load()},
                          {"errors", errors.load()}, {"serial_s", serial_s}, {"parallel_s", parallel_s},
                          {"tvm_threads", model.num_threads()}, {"messages", messages}};
    std::printf("%s\n", out.dump().c_str());
    return mismatches || errors ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stress_threads: error: %s\n", e.what());
    return 1;
  }
}
