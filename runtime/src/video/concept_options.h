// Users' overrides of concept tracking's thresholds (VideoOptions::concept_options,
// `sam3 track --set NAME=VALUE`): names are the official model's attribute names, as in
// the manifest's `detector` block. Internal.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "sam3/manifest.h"

namespace sam3 {
namespace video {

// Applies `overrides` to `cfg`; throws sam3::Error naming the first unknown name or bad
// value (thresholds outside [0, 1], counts that are negative or not whole, switches
// other than 0/1, options this runtime does not implement).
void apply_concept_options(DetectorConfig& cfg, const std::map<std::string, double>& overrides);

// The names apply_concept_options takes, for help texts.
std::vector<std::string> concept_option_names();

}  // namespace video
}  // namespace sam3
