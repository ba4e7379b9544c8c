// api_limits: each input limit of sam3/limits.h that the CLI cannot reach, through the
// public API on a bundle: a text prompt one byte over kMaxTextBytes (image and video), one
// point over kMaxVideoPoints, one object over kMaxVideoObjects; each must be one
// sam3::Error naming the limit, and the call at the limit must work. Prints one JSON line
// per check; exits 1 if any check fails. Not installed.
//
//   api_limits BUNDLE IMAGE FRAMES_DIR
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "sam3/image.h"
#include "sam3/sam3.h"
#include "sam3/video.h"

namespace {

int failures = 0;

// `call` must throw sam3::Error whose message holds `expect` (or, with expect empty, not throw)
void check(const std::string& name, const std::function<void()>& call, const std::string& expect) {
  std::string error;
  try {
    call();
  } catch (const sam3::Error& e) {
    error = e.what();
  }
  const bool ok = expect.empty() ? error.empty() : error.find(expect) != std::string::npos;
  if (!ok) ++failures;
  std::printf("%s\n", nlohmann::json{{"check", name}, {"ok", ok}, {"error", error}}.dump().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: api_limits BUNDLE IMAGE FRAMES_DIR\n");
    return 2;
  }
  try {
    sam3::Model model(argv[1]);
    const sam3::ImageState img = model.encode(sam3::load_image(argv[2]));
    sam3::ConceptPrompt text;
    text.text = std::string(sam3::kMaxTextBytes, 'a');
    check("image text at the limit", [&] { model.segment(img, text); }, "");
    text.text += "a";
    check("image text over the limit", [&] { model.segment(img, text); }, "the limit is 4096");

    {
      sam3::VideoSession v(model, argv[3]);
      sam3::VideoConceptPrompt p;
      p.text = std::string(sam3::kMaxTextBytes + 1, 'b');
      check("video text over the limit", [&] { v.add_prompt(0, p); }, "the limit is 4096");
    }
    sam3::VideoSession v(model, argv[3]);
    const float W = static_cast<float>(v.width()), H = static_cast<float>(v.height());
    std::vector<sam3::Point> pts(sam3::kMaxVideoPoints + 1, sam3::Point{W / 2, H / 2});
    check("points over the limit", [&] { v.add_points(0, 1, pts); }, "at most 256 points per call");
    pts.pop_back();
    check("points at the limit", [&] { v.add_points(0, 1, pts); }, "");
    // objects: one point each, spread over the frame
    check("objects up to the limit", [&] {
      for (int id = 2; id <= sam3::kMaxVideoObjects; ++id)
        v.add_points(0, id, {sam3::Point{static_cast<float>(id % 97) * W / 97, static_cast<float>(id % 89) * H / 89}});
    }, "");
    check("one object over the limit", [&] { v.add_points(0, sam3::kMaxVideoObjects + 1, {sam3::Point{1, 1}}); },
          "at most 1000 objects");
    check("an existing object still takes clicks", [&] { v.add_points(0, 5, {sam3::Point{2, 2}}); }, "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "api_limits: %s\n", e.what());
    return 1;
  }
  return failures ? 1 : 0;
}
