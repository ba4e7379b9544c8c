// The CLIP tokenizer on arbitrary bytes: ids or a sam3::Error (invalid UTF-8), and the
// ids always have the official layout.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "sam3/error.h"
#include "sam3/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sam3::Tokenizer tok(SAM3_FUZZ_VOCAB);
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ids = tok.encode(text, 32);
    // [start] + bpe + [end], zero-padded (or cut to 32 with the end token last). The
    // text may itself hold "<end_of_text>", which the official tokenizer maps to the
    // special id too, so only the last non-zero id must be the end token.
    if (ids.size() != 32 || ids[0] != sam3::Tokenizer::kStartOfText) abort();
    size_t last = 0;
    for (size_t i = 1; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] > sam3::Tokenizer::kEndOfText) abort();
      if (ids[i] != 0) last = i;
    }
    if (ids[last] != sam3::Tokenizer::kEndOfText) abort();
    const auto bpe = tok.bpe(text);
    // encode keeps the first ids of bpe
    for (size_t i = 0; i < bpe.size() && i + 2 < ids.size(); ++i)
      if (ids[i + 1] != bpe[i]) abort();
  } catch (const sam3::Error&) {
  }
  return 0;
}
