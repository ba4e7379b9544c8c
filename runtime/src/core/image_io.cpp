// PNG/JPEG decoding to Pillow-identical RGB8, and PNG encoding.
//
// libpng and libjpeg report errors by longjmp. Every libpng/libjpeg call runs
// inside a small function that owns the setjmp and has only trivially
// destructible locals, so a longjmp never skips a C++ destructor; the owning
// RAII structs outside release the library state, and the caller turns the
// saved message into a sam3::Error.
#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

// jpeglib.h needs size_t and FILE declared first (cstdio, above).
#include <jerror.h>
#include <jpeglib.h>

#include "sam3/error.h"
#include "sam3/limits.h"
#include "sam3/image.h"

namespace sam3 {
namespace {

constexpr size_t kMessageSize = 256;  // libpng error text buffer

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("cannot decode image " + name + ": " + what);
}

void check_size(const std::string& name, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0) fail(name, "zero-size image");
  if (width * height > kMaxImagePixels)
    fail(name, "image too large (" + std::to_string(width) + "x" + std::to_string(height) +
                   " pixels; the limit is " + std::to_string(kMaxImagePixels) + ")");
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found)
    throw Error("image not found: " + path);
  if (ec) throw Error("cannot open image " + path + ": " + ec.message());
  if (status.type() != std::filesystem::file_type::regular)
    throw Error("cannot open image " + path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open image " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw Error("cannot read image " + path);
  return bytes;
}

// ---------------------------------------------------------------- PNG read

struct PngInput {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

struct PngReader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  PngInput input{};
  char message[kMessageSize] = "unknown libpng error";
  ~PngReader() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

struct PngLayout {
  png_uint_32 width, height;
  int depth, color, channels;
  size_t rowbytes;
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* message = static_cast<char*>(png_get_error_ptr(png));
  std::snprintf(message, kMessageSize, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // the library never prints

void png_read_memory(png_structp png, png_bytep out, size_t n) {
  auto* in = static_cast<PngInput*>(png_get_io_ptr(png));
  if (in->size - in->pos < n) png_error(png, "file is truncated");
  std::memcpy(out, in->data + in->pos, n);
  in->pos += n;
}

// Sets up the transforms that give Pillow's 8-bit samples; alpha (including a
// tRNS expanded by libpng) is dropped later, as convert("RGB") drops it.
bool png_read_layout(PngReader& r, PngLayout& out) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  png_read_info(r.png, r.info);
  int interlace = 0;
  png_get_IHDR(r.png, r.info, &out.width, &out.height, &out.depth, &out.color, &interlace, nullptr,
               nullptr);
  if (out.color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r.png);
  if (out.color == PNG_COLOR_TYPE_GRAY && out.depth < 8) png_set_expand_gray_1_2_4_to_8(r.png);
  // Pillow opens 16-bit grey as "I;16" (converted later with clipping) but
  // every other 16-bit layout keeps the high byte of each sample.
  if (out.depth == 16 && out.color != PNG_COLOR_TYPE_GRAY) png_set_strip_16(r.png);
  png_set_interlace_handling(r.png);
  png_read_update_info(r.png, r.info);
  out.channels = png_get_channels(r.png, r.info);
  out.rowbytes = png_get_rowbytes(r.png, r.info);
  return true;
}

bool png_read_rows(PngReader& r, png_bytep* rows) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  png_read_image(r.png, rows);
  return true;
}

Image decode_png(const uint8_t* data, size_t size, const std::string& name) {
  PngReader r;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r.message, png_on_error, png_on_warning);
  if (!r.png) fail(name, "out of memory");
  r.info = png_create_info_struct(r.png);
  if (!r.info) fail(name, "out of memory");
  r.input = PngInput{data, size, 0};
  png_set_read_fn(r.png, &r.input, png_read_memory);

  PngLayout layout{};
  if (!png_read_layout(r, layout)) fail(name, std::string("corrupt PNG: ") + r.message);
  check_size(name, layout.width, layout.height);

  std::vector<uint8_t> pixels(layout.rowbytes * layout.height);
  std::vector<png_bytep> rows(layout.height);
  for (png_uint_32 y = 0; y < layout.height; ++y) rows[y] = pixels.data() + y * layout.rowbytes;
  if (!png_read_rows(r, rows.data())) fail(name, std::string("corrupt PNG: ") + r.message);

  Image img;
  img.width = static_cast<int>(layout.width);
  img.height = static_cast<int>(layout.height);
  const size_t n = static_cast<size_t>(img.width) * img.height;
  img.rgb.resize(n * 3);
  const bool grey16 = layout.depth == 16 && layout.color == PNG_COLOR_TYPE_GRAY;
  const int c = layout.channels;
  for (size_t i = 0; i < n; ++i) {
    uint8_t* o = &img.rgb[i * 3];
    if (grey16) {
      // Pillow's I;16 -> L conversion saturates instead of scaling.
      const unsigned v = (pixels[i * c * 2] << 8) | pixels[i * c * 2 + 1];
      o[0] = o[1] = o[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    } else if (c <= 2) {
      o[0] = o[1] = o[2] = pixels[i * c];
    } else {
      o[0] = pixels[i * c];
      o[1] = pixels[i * c + 1];
      o[2] = pixels[i * c + 2];
    }
  }
  return img;
}

// ---------------------------------------------------------------- JPEG read

struct JpegErrors {
  jpeg_error_mgr mgr;  // first member: libjpeg hands back a jpeg_error_mgr*
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  // libjpeg pads a truncated file with grey and only warns; Pillow refuses
  // it ("image file is truncated"), so this warning is an error here. Other
  // corrupt-data warnings are tolerated, as Pillow tolerates them.
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
    std::snprintf(e->message, sizeof e->message, "file is truncated");
    std::longjmp(e->jump, 1);
  }
  cinfo->err->num_warnings++;
}

void jpeg_no_output(j_common_ptr) {}  // the library never prints

struct JpegReader {
  jpeg_decompress_struct cinfo{};
  JpegErrors errors{};
  bool created = false;
  ~JpegReader() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

bool jpeg_start(JpegReader& r, const uint8_t* data, size_t size) {
  if (setjmp(r.errors.jump)) return false;
  jpeg_create_decompress(&r.cinfo);
  r.created = true;
  jpeg_mem_src(&r.cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&r.cinfo, TRUE);
  // Pillow's modes: 1 component "L", 3 "RGB", 4 "CMYK"; libjpeg does the
  // YCbCr/YCCK conversion with its default (islow, fancy upsampling) settings.
  switch (r.cinfo.num_components) {
    case 1:
      r.cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      r.cinfo.out_color_space = JCS_RGB;
      break;
    case 4:
      r.cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      std::snprintf(r.errors.message, sizeof r.errors.message,
                    "unsupported JPEG with %d components", r.cinfo.num_components);
      return false;
  }
  return true;
}

bool jpeg_begin(JpegReader& r) {
  if (setjmp(r.errors.jump)) return false;
  jpeg_start_decompress(&r.cinfo);
  return true;
}

bool jpeg_rows(JpegReader& r, uint8_t* out, size_t stride) {
  if (setjmp(r.errors.jump)) return false;
  while (r.cinfo.output_scanline < r.cinfo.output_height) {
    JSAMPROW row = out + r.cinfo.output_scanline * stride;
    jpeg_read_scanlines(&r.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&r.cinfo);
  return true;
}

// Pillow's CMYK -> RGB (libImaging/Convert.c cmyk2rgb) on Adobe-inverted
// samples, which is what Pillow assumes every CMYK JPEG holds.
uint8_t cmyk_channel(uint8_t stored_c, uint8_t stored_k) {
  const int c = 255 - stored_c;
  const int nk = stored_k;  // 255 - k
  const int t = c * nk + 128;
  const int v = nk - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  JpegReader r;
  r.cinfo.err = jpeg_std_error(&r.errors.mgr);
  r.errors.mgr.error_exit = jpeg_on_error;
  r.errors.mgr.emit_message = jpeg_on_message;
  r.errors.mgr.output_message = jpeg_no_output;
  std::snprintf(r.errors.message, sizeof r.errors.message, "unknown libjpeg error");

  if (!jpeg_start(r, data, size)) fail(name, std::string("corrupt JPEG: ") + r.errors.message);
  check_size(name, r.cinfo.image_width, r.cinfo.image_height);
  if (!jpeg_begin(r)) fail(name, std::string("corrupt JPEG: ") + r.errors.message);

  const int c = r.cinfo.output_components;
  const size_t w = r.cinfo.output_width, h = r.cinfo.output_height;
  std::vector<uint8_t> pixels(w * h * c);
  if (!jpeg_rows(r, pixels.data(), w * c))
    fail(name, std::string("corrupt JPEG: ") + r.errors.message);

  Image img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.rgb.resize(w * h * 3);
  for (size_t i = 0; i < w * h; ++i) {
    uint8_t* o = &img.rgb[i * 3];
    const uint8_t* p = &pixels[i * c];
    if (c == 1) {
      o[0] = o[1] = o[2] = p[0];
    } else if (c == 3) {
      std::memcpy(o, p, 3);
    } else {
      for (int k = 0; k < 3; ++k) o[k] = cmyk_channel(p[k], p[3]);
    }
  }
  return img;
}

// ---------------------------------------------------------------- PNG write

struct PngWriter {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::FILE* file = nullptr;
  char message[kMessageSize] = "unknown libpng error";
  ~PngWriter() {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    if (file) std::fclose(file);
  }
};

void png_write_file(png_structp png, png_bytep data, size_t n) {
  auto* file = static_cast<std::FILE*>(png_get_io_ptr(png));
  if (std::fwrite(data, 1, n, file) != n) png_error(png, std::strerror(errno));
}

void png_flush_file(png_structp png) { std::fflush(static_cast<std::FILE*>(png_get_io_ptr(png))); }

bool png_write_all(PngWriter& w, int width, int height, int color, png_bytep* rows,
                   const std::vector<png_color>* palette = nullptr) {
  if (setjmp(png_jmpbuf(w.png))) return false;
  png_set_write_fn(w.png, w.file, png_write_file, png_flush_file);
  png_set_IHDR(w.png, w.info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (palette) png_set_PLTE(w.png, w.info, palette->data(), static_cast<int>(palette->size()));
  png_write_info(w.png, w.info);
  png_write_image(w.png, rows);
  png_write_end(w.png, nullptr);
  return true;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size == 0) fail(name, "empty file");
  if (size >= 8 && std::memcmp(data, kPngSignature, 8) == 0) return decode_png(data, size, name);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return decode_jpeg(data, size, name);
  fail(name, "unsupported format (not a PNG or JPEG file)");
}

Image load_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

namespace {

// Writes rows as an 8-bit PNG of `color` type; removes the file on any failure.
void write_png(const std::string& path, int width, int height, int channels, int color,
               const uint8_t* data, const std::vector<png_color>* palette) {
  const std::string where = "cannot write PNG " + path + ": ";
  if (width <= 0 || height <= 0) throw Error(where + "zero-size image");
  if (!data) throw Error(where + "no pixel data");
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  const size_t stride = static_cast<size_t>(width) * channels;
  for (int y = 0; y < height; ++y) rows[y] = const_cast<png_bytep>(data + y * stride);

  bool ok = false;
  std::string message;
  {
    PngWriter w;
    w.file = std::fopen(path.c_str(), "wb");
    if (!w.file) throw Error(where + std::strerror(errno));
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w.message, png_on_error, png_on_warning);
    if (w.png) w.info = png_create_info_struct(w.png);
    if (!w.png || !w.info) {
      message = "out of memory";
    } else if (!png_write_all(w, width, height, color, rows.data(), palette)) {
      message = w.message;
    } else if (std::fclose(w.file) != 0) {
      w.file = nullptr;
      message = std::strerror(errno);
    } else {
      w.file = nullptr;
      ok = true;
    }
  }
  if (!ok) {
    std::remove(path.c_str());  // no half-written file
    throw Error(where + message);
  }
}

struct JpegWriter {
  JpegErrors err{};
  jpeg_compress_struct cinfo{};
  std::FILE* file = nullptr;
  bool created = false;
  ~JpegWriter() {
    if (created) jpeg_destroy_compress(&cinfo);
    if (file) std::fclose(file);
  }
};

bool jpeg_write_all(JpegWriter& w, int width, int height, const uint8_t* rgb, int quality) {
  w.cinfo.err = jpeg_std_error(&w.err.mgr);
  w.err.mgr.error_exit = jpeg_on_error;
  w.err.mgr.emit_message = jpeg_on_message;
  w.err.mgr.output_message = jpeg_no_output;
  if (setjmp(w.err.jump)) return false;
  jpeg_create_compress(&w.cinfo);
  w.created = true;
  jpeg_stdio_dest(&w.cinfo, w.file);
  w.cinfo.image_width = static_cast<JDIMENSION>(width);
  w.cinfo.image_height = static_cast<JDIMENSION>(height);
  w.cinfo.input_components = 3;
  w.cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&w.cinfo);
  jpeg_set_quality(&w.cinfo, quality, TRUE);
  jpeg_start_compress(&w.cinfo, TRUE);
  while (w.cinfo.next_scanline < w.cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(rgb + static_cast<size_t>(w.cinfo.next_scanline) * width * 3);
    jpeg_write_scanlines(&w.cinfo, &row, 1);
  }
  jpeg_finish_compress(&w.cinfo);
  return true;
}

}  // namespace

void save_png(const std::string& path, int width, int height, int channels, const uint8_t* data) {
  if (channels != 1 && channels != 3 && channels != 4)
    throw Error("cannot write PNG " + path + ": unsupported channel count " + std::to_string(channels));
  const int color = channels == 1   ? PNG_COLOR_TYPE_GRAY
                    : channels == 3 ? PNG_COLOR_TYPE_RGB
                                    : PNG_COLOR_TYPE_RGB_ALPHA;
  write_png(path, width, height, channels, color, data, nullptr);
}

void save_png_indexed(const std::string& path, int width, int height, const uint8_t* indices,
                      const std::vector<uint8_t>& palette_rgb) {
  if (palette_rgb.empty() || palette_rgb.size() % 3 || palette_rgb.size() > 256 * 3)
    throw Error("cannot write PNG " + path + ": the palette needs 1..256 RGB entries");
  std::vector<png_color> pal(palette_rgb.size() / 3);
  for (size_t i = 0; i < pal.size(); ++i)
    pal[i] = png_color{palette_rgb[3 * i], palette_rgb[3 * i + 1], palette_rgb[3 * i + 2]};
  write_png(path, width, height, 1, PNG_COLOR_TYPE_PALETTE, indices, &pal);
}

void save_jpeg(const std::string& path, int width, int height, const uint8_t* rgb, int quality) {
  const std::string where = "cannot write JPEG " + path + ": ";
  if (width <= 0 || height <= 0 || !rgb) throw Error(where + "empty image");
  bool ok = false;
  std::string message;
  {
    JpegWriter w;
    w.file = std::fopen(path.c_str(), "wb");
    if (!w.file) throw Error(where + std::strerror(errno));
    if (!jpeg_write_all(w, width, height, rgb, quality)) {
      message = w.err.message;
    } else if (std::fclose(w.file) != 0) {
      w.file = nullptr;
      message = std::strerror(errno);
    } else {
      w.file = nullptr;
      ok = true;
    }
  }
  if (!ok) {
    std::remove(path.c_str());
    throw Error(where + message);
  }
}

}  // namespace sam3
