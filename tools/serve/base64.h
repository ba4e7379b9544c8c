// Base64 and data-URI decoding for request bodies (`sam3 serve`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sam3::serve {

// Decodes standard base64 (RFC 4648, with padding; whitespace and line breaks are
// skipped, as Python's b64decode does). Throws sam3::Error on any other character,
// a bad length or bad padding.
std::vector<uint8_t> base64_decode(const std::string& text);

// Standard base64 with padding.
std::string base64_encode(const uint8_t* data, size_t size);

// The bytes of an image given as a data URI ("data:image/png;base64,....") or as raw
// base64. Throws sam3::Error for a data URI that is not base64 or bad base64.
std::vector<uint8_t> decode_image_field(const std::string& field);

}  // namespace sam3::serve
