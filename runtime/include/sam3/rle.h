// COCO run-length encoding, byte-for-byte as pycocotools'
// mask_utils.encode(np.asfortranarray(mask))["counts"].
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sam3 {

// mask: h*w, row-major, nonzero = foreground. Runs go down the columns, starting with
// a (possibly empty) run of zeros.
std::string rle_encode(const uint8_t* mask, int h, int w);

// Back to a row-major 0/1 mask; throws sam3::Error on malformed counts or when the
// runs do not cover exactly h*w pixels.
std::vector<uint8_t> rle_decode(const std::string& counts, int h, int w);

// Foreground pixels of an encoded mask (pycocotools' area()).
uint64_t rle_area(const std::string& counts);

// [x0, y0, x1, y1] with exclusive x1/y1 (pycocotools' toBbox as corners);
// all zero for an empty mask.
std::array<float, 4> mask_bbox_xyxy(const uint8_t* mask, int h, int w);

}  // namespace sam3
