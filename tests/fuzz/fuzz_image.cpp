// PNG/JPEG decoding (sam3::decode_image): any bytes give an image or a sam3::Error.
#include <cstdint>
#include <cstdlib>

#include "sam3/error.h"
#include "sam3/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sam3::Image img = sam3::decode_image(data, size, "fuzz");
    // a decoded image is whole: positive size, one RGB triple per pixel
    if (img.width <= 0 || img.height <= 0 ||
        img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3)
      abort();
  } catch (const sam3::Error&) {
  }
  return 0;
}
