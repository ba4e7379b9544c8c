// POST /v1/predict of the X-AnyLabeling-Server contract on a sam3::Model (`sam3 serve`).
//
// Request: {"model": ID, "image": data URI or base64 (PNG/JPEG), "params": {
//   "text_prompt": "cat, dog" (concepts split at ',' else '.', trimmed, duplicates dropped),
//   "marks": [{"type": "point", "data": [x, y], "label": 1|0},
//             {"type": "rectangle", "data": [x0, y0, x1, y1], "label": 1|0}],
//   "conf_threshold": 0.25, "epsilon_factor": 0.001, "show_masks": true, "show_boxes": true}}
// Marks with a point: one interactive (click) segmentation from the points and at most one
// positive rectangle. Marks with rectangles only: a concept prompt from exemplar boxes
// (positive and negative), as the reference server's add_geometric_prompt. Otherwise the
// text: one concept prompt per concept, shapes labelled with it. No prompt: no shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "image_cache.h"
#include "sam3/sam3.h"
#include "shapes.h"

namespace sam3::serve {

// An error with the contract's code: INVALID_REQUEST (ours: a field is missing, of the
// wrong type or out of range), INVALID_IMAGE, MODEL_NOT_FOUND, INFERENCE_ERROR.
struct RequestError : Error {
  RequestError(std::string code, const std::string& message) : Error(message), code(std::move(code)) {}
  std::string code;
};

struct PredictRequest {
  std::vector<uint8_t> image;  // the encoded file's bytes
  std::vector<std::string> concepts;
  std::vector<Point> points;
  std::vector<Box> rectangles;
  float conf_threshold = 0.25f;
  ShapeOptions shapes;
};

// The comma- (else period-) separated concepts of a text prompt, as the reference server.
std::vector<std::string> split_concepts(const std::string& text);

// Checks the request's fields (model id, types, ranges) and decodes the base64 image;
// throws RequestError. Image content is checked later (decoding is a worker's job).
PredictRequest parse_predict(const nlohmann::json& body, const std::string& model_id);

// Decodes the image (INVALID_IMAGE), checks marks against its size (INVALID_REQUEST),
// encodes it through the cache and runs the prompts (INFERENCE_ERROR); returns "data".
nlohmann::json run_predict(Model& model, ImageCache& cache, const PredictRequest& req, bool* cache_hit = nullptr);

}  // namespace sam3::serve
