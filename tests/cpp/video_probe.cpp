// video_probe: runs one internal step of the video runtime on a bundle and prints JSON, for
// the parity tests that compare it with the official code (tests/python/test_concept_steps.py).
// Not installed; the internal classes are used directly.
//
//   video_probe detect BUNDLE FRAME.png TEXT [cx cy w h label] [score_threshold nms_threshold]
//     the detector step (video/detector.h) on one frame, preprocessed as the video loader
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "component.h"
#include "sam3/error.h"
#include "sam3/image.h"
#include "sam3/manifest.h"
#include "sam3/safetensors.h"
#include "sam3/tokenizer.h"
#include "video/detector.h"
#include "video/tracker_model.h"

int main(int argc, char** argv) {
  try {
    if (argc < 5 || std::string(argv[1]) != "detect")
      throw sam3::Error("usage: video_probe detect BUNDLE FRAME.png TEXT [cx cy w h label] [score nms]");
    sam3::detail::default_thread_count();
    const sam3::Manifest m = sam3::load_manifest(argv[2]);
    sam3::SafeTensors weights(m.path(m.weights_file));
    std::map<std::string, std::unique_ptr<sam3::detail::Component>> comps;
    std::map<std::string, const sam3::detail::Component*> ptrs;
    for (const char* name : {"image_encoder", "text_encoder", "grounding_head", "interactive_decoder",
                             "memory_encoder", "memory_attention", "mask_downsample"}) {
      comps[name] = std::make_unique<sam3::detail::Component>(m, m.component(name), weights);
      ptrs[name] = comps[name].get();
    }
    std::map<std::string, double> timings;
    sam3::Tokenizer tokenizer(m.path(m.vocab_file));
    sam3::video::TrackerModel tracker(m, ptrs, timings);
    sam3::video::Detector detector(m, *ptrs["text_encoder"], *ptrs["grounding_head"], tokenizer, timings);
    sam3::video::ConceptPromptSpec prompt;
    prompt.text = argv[4];
    int arg = 5;
    if (argc >= arg + 5) {
      prompt.box_cxcywh = std::array<float, 4>{std::stof(argv[arg]), std::stof(argv[arg + 1]),
                                               std::stof(argv[arg + 2]), std::stof(argv[arg + 3])};
      prompt.box_positive = std::atoi(argv[arg + 4]) != 0;
      prompt.box_frame = 0;
      arg += 5;
    }
    sam3::DetectorConfig cfg = m.detector;
    if (argc >= arg + 2) {
      cfg.score_threshold_detection = std::stof(argv[arg]);
      cfg.det_nms_thresh = std::stof(argv[arg + 1]);
    }
    detector.set_prompt(prompt);
    const sam3::video::FrameFeatures f = tracker.encode_frame(sam3::load_image(argv[3]), true);
    const sam3::video::Detections d = detector.detect(f, 0, true, cfg);
    nlohmann::json out = {{"scores", d.scores}, {"boxes_xyxy", d.boxes_xyxy}, {"masks", d.masks}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video_probe: error: %s\n", e.what());
    return 1;
  }
}
