// Segmentation results as X-AnyLabeling shapes: a polygon traced around each mask and/or
// its box as a rectangle, in image pixels (X-AnyLabeling-Server's SAM 3 wrapper).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sam3/sam3.h"

namespace sam3::serve {

// The largest outer contour of a 0/1 mask (cv2.findContours RETR_EXTERNAL,
// CHAIN_APPROX_SIMPLE; largest by cv2.contourArea), simplified by cv2.approxPolyDP with
// epsilon = epsilon_factor * its perimeter (no simplification when epsilon_factor is 0),
// closed by repeating the first point. Empty for an empty mask.
std::vector<std::array<float, 2>> mask_polygon(const std::vector<uint8_t>& mask, int width, int height,
                                               double epsilon_factor);

struct ShapeOptions {
  bool polygons = true;    // show_masks
  bool rectangles = true;  // show_boxes
  double epsilon_factor = 0.001;
};

// A shape with every field the X-AnyLabeling client reads, and the mask as COCO RLE
// ({"size": [h, w], "counts": ...}) under "mask".
nlohmann::json make_shape(const std::string& label, const char* type, nlohmann::json points, float score,
                          const nlohmann::json& rle, const nlohmann::json& group_id = nullptr);

// {"size": [h, w], "counts": COCO RLE} of a 0/1 row-major mask.
nlohmann::json mask_rle(const std::vector<uint8_t>& mask, int width, int height);

// One shape per instance and kind (polygon first, then rectangle), every field the client
// reads; each shape also carries "mask": {"size": [h, w], "counts": COCO RLE} (an extension
// the client ignores).
nlohmann::json instance_shapes(const Instance& inst, const std::string& label, const ShapeOptions& opt);

}  // namespace sam3::serve
