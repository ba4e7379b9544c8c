// Writing a segmentation result: result.json (COCO RLE), one PNG per mask, overlay.png.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sam3/sam3.h"

namespace sam3::cli {

// Writes everything into out_dir (created if needed) through a staging folder, so a
// failure (a full disk, a read-only folder) leaves no partial file; returns the
// result.json path.
std::string write_outputs(const std::string& out_dir, const Image& image,
                          const std::vector<Instance>& instances, const nlohmann::json& prompt);

// Runs `write(staging)` on a fresh staging folder beside `out_dir`, then moves every entry
// it wrote into `out_dir` (replacing entries of the same name) and removes the staging
// folder; on any failure the staging folder is removed and the error rethrown.
void write_staged(const std::string& out_dir, const std::function<void(const std::string& staging)>& write);

// std::ofstream with the error checks a full disk needs: throws sam3::Error naming `path`
// if opening, writing or closing fails.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace sam3::cli
