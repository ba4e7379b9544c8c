// Writing a segmentation result: result.json (COCO RLE), one PNG per mask, overlay.png.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sam3/sam3.h"

namespace sam3::cli {

// Writes everything into out_dir (created if needed); returns the result.json path.
std::string write_outputs(const std::string& out_dir, const Image& image,
                          const std::vector<Instance>& instances, const nlohmann::json& prompt);

}  // namespace sam3::cli
