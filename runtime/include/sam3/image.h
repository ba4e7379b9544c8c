// Image decoding/encoding and the SAM 3 image preprocessing.
//
// Decoding reproduces Pillow's `Image.open(path).convert("RGB")` and the resize
// reproduces torchvision's v2.Resize on a uint8 tensor on an AVX2 CPU (PyTorch's
// fixed-point antialiased bilinear kernel), bit for bit, so the C++ runtime sees
// exactly the tensor the official `Sam3Processor.set_image` builds on CPU.
// (On CUDA torchvision resizes in float32 and rounds instead; that differs by
// one level on about 0.04% of the values for assets/sample.png at 1008.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sam3 {

// 8-bit RGB pixels, row-major HWC.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes a PNG or JPEG file (recognised by content, not by extension) to RGB8
// the way Pillow's convert("RGB") does: grey is replicated, alpha is dropped
// (not composited), palettes are expanded, 16-bit RGB keeps the high byte,
// 16-bit grey is clipped to 255, CMYK JPEGs use Pillow's Adobe-inverted
// conversion. Throws sam3::Error naming the file on any failure.
Image load_image(const std::string& path);

// Decodes an in-memory PNG or JPEG; `name` is only used in error messages.
Image decode_image(const uint8_t* data, size_t size, const std::string& name);

// Writes an 8-bit PNG; channels is 1 (grey), 3 (RGB) or 4 (RGBA), rows are
// packed HWC. Throws sam3::Error (and leaves no partial file) on failure.
void save_png(const std::string& path, int width, int height, int channels, const uint8_t* data);

// Writes an 8-bit palette PNG (one index per pixel, palette as RGB triples, at most 256),
// e.g. DAVIS-style object masks. Same error handling as save_png.
void save_png_indexed(const std::string& path, int width, int height, const uint8_t* indices,
                      const std::vector<uint8_t>& palette_rgb);

// Writes a baseline JPEG of packed RGB8 rows at `quality` (1..100).
void save_jpeg(const std::string& path, int width, int height, const uint8_t* rgb, int quality = 90);

// torch.nn.functional.interpolate(mode="bilinear", antialias=True,
// align_corners=False) on uint8, as PyTorch's CPU kernel computes it. HWC out.
std::vector<uint8_t> resize_bilinear_aa_u8(const Image& img, int out_w, int out_h);

// The official transform: stretch to size x size (above), x/255, (x-0.5)/0.5.
// Returns NCHW float [3, size, size] (batch of one).
std::vector<float> preprocess(const Image& img, int size);

// Pillow's Image.resize((out_w, out_h), Image.BILINEAR) on an RGB image, bit
// for bit (Pillow's 22-bit fixed-point weights, x pass then y pass). This is
// what torchvision's functional resize does to a PIL image. HWC out.
std::vector<uint8_t> resize_bilinear_pil(const Image& img, int out_w, int out_h);

// The official video loader's frame (sam3/model/io_utils.py,
// load_video_frames_from_image_folder): stretch to size x size with Pillow
// (above), to_tensor's float32 x/255 stored as float16, then (x-0.5)/0.5 in
// float16, read back as float32 as the tracker does. NCHW float [3, size, size],
// bit-identical to that tensor after .float().
std::vector<float> preprocess_video_frame(const Image& img, int size);

}  // namespace sam3
