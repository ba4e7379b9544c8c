// CLIP BPE tokenizer mirroring sam3.model.tokenizer_ve.SimpleTokenizer(bpe_path)
// (clean="lower", the mode SAM 3's model_builder uses).
//
// Text cleaning mirrors ftfy 6.3.1's fix_text with its default configuration:
// reproduced are the per-line segmenting (and the 1,000,000-character segment
// cap), unescape_html="auto" (off from the first line holding '<' to the end, as
// fix_text keeps the changed config), unescape_html itself (';'-terminated HTML5
// names, ftfy's all-caps names such as &EACUTE;, numeric references),
// fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
// fix_line_breaks, fix_surrogates, remove_terminal_escapes,
// remove_control_chars and NFC, repeated until the text stops changing.
//
// NOT reproduced: ftfy's mojibake repair (fix_encoding). That is the badness
// heuristic (ftfy.badness.is_bad) and all it gates: re-decoding text that was
// UTF-8 mis-read as latin-1, sloppy-windows-1250/1251/1252/1253/1254/1257,
// iso-8859-2, macroman or cp437 ("cafÃ©" stays "cafÃ©" here, Python gives
// "café"), restore_byte_a0, replace_lossy_sequences, decode_inconsistent_utf8
// and the utf-8-variants (CESU-8, Java's C0 80) decoding. fix_encoding leaves
// ASCII text, and any text its heuristic finds clean, untouched, so ordinary
// prompts are unaffected; tests/cpp/data/gen_tokenizer_cases.py refuses golden
// cases that fix_encoding would change.
//
// After ftfy: html.unescape twice, strip, \s+ -> " ", str.lower() (with İ ->
// i + U+0307 and the final-sigma rule), then the split pattern
//   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// under re.IGNORECASE (so "ſ" also matches "s", and U+0345, whose upper case is
// a letter, matches no alternative and is dropped), then byte-level BPE.
//
// Unicode data: Python 3.12 and utf8proc 2.8 both carry Unicode 15.0; the
// `regex` module knows newer characters, listed in unicode_ranges.inc.
// Input must be UTF-8; surrogates written as 3-byte sequences are accepted and
// repaired as fix_surrogates does, since a Python str may hold them.
#include "sam3/tokenizer.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "sam3/error.h"
#include "text_clean.h"

namespace sam3 {
namespace {

constexpr size_t kMergeCount = 49152 - 256 - 2;  // merges[1 : 49152 - 256 - 2 + 1]

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      throw Error("tokenizer vocabulary not found: " + path);
    }
    throw Error("cannot open tokenizer vocabulary: " + path);
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error("cannot read tokenizer vocabulary: " + path);
  return data;
}

std::string gunzip(const std::string& data, const std::string& path) {
  if (data.size() < 2 || static_cast<unsigned char>(data[0]) != 0x1F ||
      static_cast<unsigned char>(data[1]) != 0x8B) {
    throw Error("tokenizer vocabulary is not a gzip file: " + path);
  }
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw Error("zlib initialisation failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[1 << 16];
  int rc = Z_OK;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(buffer);
    zs.avail_out = sizeof(buffer);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - zs.avail_out);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      inflateReset(&zs);  // another gzip member follows, as gzip.open allows
      continue;
    }
    if (rc != Z_OK) break;
  }
  const std::string reason = rc == Z_STREAM_END ? "" : (zs.msg ? zs.msg : "truncated data");
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    throw Error("tokenizer vocabulary is corrupt (" + reason + "): " + path);
  }
  return out;
}

// bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the rest are
// moved to U+0100 and up. The vocabulary starts with these in this order.
std::vector<int> byte_order_and_chars(char32_t chars[256]) {
  std::vector<int> order;
  bool printable[256] = {};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  for (int b = 0; b < 256; ++b) {
    if (printable[b]) {
      order.push_back(b);
      chars[b] = static_cast<char32_t>(b);
    }
  }
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (!printable[b]) {
      order.push_back(b);
      chars[b] = static_cast<char32_t>(256 + n++);
    }
  }
  return order;
}

std::vector<std::string> split_merge(const std::string& line) {
  std::vector<std::string> parts;
  std::string current;
  for (char ch : line) {
    if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f') {
      if (!current.empty()) parts.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(ch);
    }
  }
  if (!current.empty()) parts.push_back(std::move(current));
  return parts;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Literal match under re.IGNORECASE: the only non-ASCII character that folds
// onto a letter of these literals is U+017F LATIN SMALL LETTER LONG S.
bool matches_literal(const std::u32string& s, size_t i, const char* literal) {
  for (size_t k = 0; literal[k] != '\0'; ++k, ++i) {
    if (i >= s.size()) return false;
    const char32_t c = s[i];
    const char32_t l = static_cast<unsigned char>(literal[k]);
    const bool same =
        c == l || (l >= 'a' && l <= 'z' && c == l - 'a' + 'A') || (l == 's' && c == 0x017F);
    if (!same) return false;
  }
  return true;
}

// U+0345 is neither a letter nor a number, yet under IGNORECASE its upper-case
// form (a letter) keeps it out of [^\s\p{L}\p{N}] as well.
bool is_other(char32_t c) {
  return !text::is_regex_space(c) && !text::is_letter(c) && !text::is_number(c) && c != 0x0345;
}

struct Piece {
  size_t begin, end;
  bool special;
};

// re.findall(pat, text) with the CLIP pattern; alternatives tried in order.
std::vector<Piece> split(const std::u32string& s) {
  static const char* const kSpecials[] = {"<start_of_text>", "<end_of_text>"};
  static const char* const kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  std::vector<Piece> pieces;
  size_t i = 0;
  while (i < s.size()) {
    bool matched = false;
    for (const char* special : kSpecials) {
      if (matches_literal(s, i, special)) {
        const size_t len = std::char_traits<char>::length(special);
        pieces.push_back({i, i + len, true});
        i += len;
        matched = true;
        break;
      }
    }
    for (size_t k = 0; !matched && k < std::size(kContractions); ++k) {
      if (matches_literal(s, i, kContractions[k])) {
        const size_t len = std::char_traits<char>::length(kContractions[k]);
        pieces.push_back({i, i + len, false});
        i += len;
        matched = true;
      }
    }
    if (matched) continue;
    size_t j = i;
    if (text::is_letter(s[i])) {
      while (j < s.size() && text::is_letter(s[j])) ++j;
    } else if (text::is_number(s[i])) {
      j = i + 1;
    } else if (is_other(s[i])) {
      while (j < s.size() && is_other(s[j])) ++j;
    } else {
      ++i;  // whitespace (or U+0345): not part of any token
      continue;
    }
    pieces.push_back({i, j, false});
    i = j;
  }
  return pieces;
}

}  // namespace

struct Tokenizer::Vocab {
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  int32_t byte_id[256];      // a byte inside a word
  int32_t byte_end_id[256];  // a byte ending a word ("</w>" appended)
  std::unordered_map<uint64_t, Merge> merges;

  // SimpleTokenizer.bpe: repeatedly merge every occurrence of the lowest-ranked
  // adjacent pair, left to right, until no adjacent pair is a known merge.
  void bpe_word(const std::string& bytes, std::vector<int32_t>* out) const {
    std::vector<int32_t> word;
    word.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i) {
      const auto b = static_cast<unsigned char>(bytes[i]);
      word.push_back(i + 1 == bytes.size() ? byte_end_id[b] : byte_id[b]);
    }
    std::vector<int32_t> next;
    while (word.size() > 1) {
      const Merge* best = nullptr;
      int32_t first = 0, second = 0;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = merges.find(pair_key(word[i], word[i + 1]));
        if (it != merges.end() && (best == nullptr || it->second.rank < best->rank)) {
          best = &it->second;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (best == nullptr) break;
      next.clear();
      for (size_t i = 0; i < word.size();) {
        if (word[i] == first && i + 1 < word.size() && word[i + 1] == second) {
          next.push_back(best->merged);
          i += 2;
        } else {
          next.push_back(word[i++]);
        }
      }
      word.swap(next);
    }
    out->insert(out->end(), word.begin(), word.end());
  }
};

Tokenizer::Tokenizer(const std::string& vocab_gz_path) : vocab_(std::make_unique<Vocab>()) {
  const std::string text = gunzip(read_file(vocab_gz_path), vocab_gz_path);
  try {
    text::decode_utf8(text);  // gzip.open(...).read().decode("utf-8") is strict
  } catch (const Error& e) {
    throw Error("tokenizer vocabulary is corrupt (" + std::string(e.what()) +
                "): " + vocab_gz_path);
  }

  char32_t chars[256];
  const std::vector<int> order = byte_order_and_chars(chars);
  std::vector<std::string> vocab;
  vocab.reserve(512 + kMergeCount + 2);
  for (int b : order) vocab.push_back(text::encode_utf8(std::u32string(1, chars[b])));
  for (int b : order) vocab.push_back(text::encode_utf8(std::u32string(1, chars[b])) + "</w>");

  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kMergeCount);
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);  // the version header
  for (size_t n = 1; merges.size() < kMergeCount && std::getline(lines, line); ++n) {
    std::vector<std::string> parts = split_merge(line);
    if (parts.size() != 2) {
      throw Error("tokenizer vocabulary is corrupt (line " + std::to_string(n + 1) +
                  " is not a merge pair): " + vocab_gz_path);
    }
    vocab.push_back(parts[0] + parts[1]);
    merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
  }
  if (merges.size() < kMergeCount) {
    throw Error("tokenizer vocabulary is corrupt (" + std::to_string(merges.size()) +
                " merges, expected " + std::to_string(kMergeCount) + "): " + vocab_gz_path);
  }
  vocab.push_back("<start_of_text>");
  vocab.push_back("<end_of_text>");

  // dict(zip(...)) semantics: a repeated key keeps its last value.
  std::unordered_map<std::string, int32_t> encoder;
  encoder.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) encoder[vocab[i]] = static_cast<int32_t>(i);
  for (int b = 0; b < 256; ++b) {
    const std::string ch = text::encode_utf8(std::u32string(1, chars[b]));
    vocab_->byte_id[b] = encoder.at(ch);
    vocab_->byte_end_id[b] = encoder.at(ch + "</w>");
  }
  vocab_->merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto a = encoder.find(merges[rank].first);
    auto b = encoder.find(merges[rank].second);
    if (a == encoder.end() || b == encoder.end()) continue;  // can never apply
    vocab_->merges[pair_key(a->second, b->second)] = {
        static_cast<int32_t>(rank), encoder.at(merges[rank].first + merges[rank].second)};
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::bpe_limited(const std::string& text, size_t limit) const {
  const std::u32string cleaned = text::clean_lower(text::decode_utf8(text));
  std::vector<int32_t> ids;
  for (const Piece& piece : split(cleaned)) {
    if (ids.size() >= limit) break;
    const std::string bytes =
        text::encode_utf8(cleaned.substr(piece.begin, piece.end - piece.begin));
    // Only the exact spellings are in SimpleTokenizer's cache; "<ſtart_of_text>"
    // matches the pattern yet goes through BPE like any other word.
    if (piece.special && bytes == "<start_of_text>") {
      ids.push_back(static_cast<int32_t>(kStartOfText));
    } else if (piece.special && bytes == "<end_of_text>") {
      ids.push_back(static_cast<int32_t>(kEndOfText));
    } else {
      vocab_->bpe_word(bytes, &ids);
    }
  }
  return ids;
}

std::vector<int32_t> Tokenizer::bpe(const std::string& text) const {
  return bpe_limited(text, std::numeric_limits<size_t>::max());
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, int context_length) const {
  if (context_length < 0) {
    throw Error("context_length must not be negative, got " + std::to_string(context_length));
  }
  const size_t length =
      static_cast<size_t>(context_length == 0 ? kDefaultContextLength : context_length);
  // One id past what fits is enough to know the sequence must be truncated.
  const std::vector<int32_t> ids = bpe_limited(text, length - 1);
  std::vector<int64_t> tokens;
  tokens.reserve(ids.size() + 2);
  tokens.push_back(kStartOfText);
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  tokens.push_back(kEndOfText);
  if (tokens.size() > length) {
    tokens.resize(length);
    tokens.back() = kEndOfText;
  }
  tokens.resize(length, 0);
  return tokens;
}

}  // namespace sam3
