// CLIP byte-level BPE tokenizer, token for token equal to SAM 3's
// sam3.model.tokenizer_ve.SimpleTokenizer (clean="lower"), except for ftfy's
// mojibake repair (see tokenizer.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sam3 {

class Tokenizer {
 public:
  // Loads the gzipped merges file (bpe_simple_vocab_16e6.txt.gz). Throws
  // sam3::Error naming the file when it is missing, not gzip, or malformed.
  explicit Tokenizer(const std::string& vocab_gz_path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Exactly SimpleTokenizer([text], context_length)[0]: [49406] + bpe + [49407],
  // zero-padded to context_length; when too long it keeps the first
  // context_length ids and makes the last one 49407. As in the official code a
  // context_length of 0 means its default, 77; a negative one throws. Text must
  // be UTF-8 (sam3::Error otherwise).
  std::vector<int64_t> encode(const std::string& text, int context_length = 32) const;

  // Token ids without start/end.
  std::vector<int32_t> bpe(const std::string& text) const;

  static constexpr int64_t kStartOfText = 49406, kEndOfText = 49407;
  static constexpr int kDefaultContextLength = 77;

 private:
  struct Vocab;
  // Stops once `limit` ids are produced: words are encoded independently, so
  // later words cannot change earlier ids.
  std::vector<int32_t> bpe_limited(const std::string& text, size_t limit) const;

  std::unique_ptr<Vocab> vocab_;
};

}  // namespace sam3
