#include "base64.h"

#include <openssl/evp.h>

#include "sam3/error.h"

namespace sam3::serve {

std::vector<uint8_t> base64_decode(const std::string& text) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text)
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') clean.push_back(c);
  if (clean.size() % 4 != 0) throw Error("bad base64: length " + std::to_string(clean.size()) + " is not a multiple of 4");
  size_t pad = 0;
  while (pad < 2 && pad < clean.size() && clean[clean.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i + pad < clean.size(); ++i) {
    const char c = clean[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) throw Error("bad base64: unexpected character at offset " + std::to_string(i));
  }
  if (clean.empty()) return {};
  // OpenSSL's block decoder: whole quads in, 3 bytes per quad out (padding counted as zeros)
  std::vector<uint8_t> out(clean.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) throw Error("bad base64");
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string base64_encode(const uint8_t* data, size_t size) {
  std::string out((size + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::vector<uint8_t> decode_image_field(const std::string& field) {
  if (field.rfind("data:", 0) == 0) {
    const size_t comma = field.find(',');
    if (comma == std::string::npos) throw Error("bad data URI: no ',' before the data");
    const std::string meta = field.substr(5, comma - 5);
    if (meta.size() < 7 || meta.compare(meta.size() - 7, 7, ";base64") != 0)
      throw Error("bad data URI: only base64 data URIs are accepted");
    return base64_decode(field.substr(comma + 1));
  }
  return base64_decode(field);
}

}  // namespace sam3::serve
