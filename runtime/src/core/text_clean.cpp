// ftfy.fix_text (default config, no mojibake repair), whitespace handling and
// str.lower(), as SimpleTokenizer's "lower" clean function applies them.
// utf8proc 2.8 carries Unicode 15.0, the same tables as Python 3.12's unicodedata.
#include "text_clean.h"

#include <utf8proc.h>

#include <cstdlib>
#include <string>

#include "sam3/error.h"

namespace sam3::text {
namespace {

struct Range {
  char32_t first, last;
};

#include "unicode_ranges.inc"

template <size_t N>
bool in_ranges(const Range (&ranges)[N], char32_t c) {
  for (const Range& r : ranges) {
    if (c < r.first) return false;
    if (c <= r.last) return true;
  }
  return false;
}

utf8proc_category_t category(char32_t c) {
  return c < 0x110000 ? utf8proc_category(static_cast<utf8proc_int32_t>(c)) : UTF8PROC_CATEGORY_CN;
}

// --- ftfy fixers, in the order fix_and_explain runs them ------------------

// fix_c1_controls: C1 controls are read as the Windows-1252 bytes they usually
// were; the five bytes Windows-1252 leaves undefined stay as they are.
char32_t c1_to_cp1252(char32_t c) {
  static const char32_t kTable[32] = {
      0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  return (c >= 0x80 && c <= 0x9F) ? kTable[c - 0x80] : c;
}

// fix_latin_ligatures (ftfy.chardata.LIGATURES).
const char32_t* ligature(char32_t c) {
  struct Ligature {
    char32_t from;
    const char32_t* to;
  };
  static const Ligature kLigatures[] = {
      {0x0132, U"IJ"},      {0x0133, U"ij"},      {0x0149, U"\u02BCn"}, {0x01C4, U"D\u017D"},
      {0x01C5, U"D\u017E"}, {0x01C6, U"d\u017E"}, {0x01C7, U"LJ"},      {0x01C8, U"Lj"},
      {0x01C9, U"lj"},      {0x01CA, U"NJ"},      {0x01CB, U"Nj"},      {0x01CC, U"nj"},
      {0x01F1, U"DZ"},      {0x01F2, U"Dz"},      {0x01F3, U"dz"},      {0xFB00, U"ff"},
      {0xFB01, U"fi"},      {0xFB02, U"fl"},      {0xFB03, U"ffi"},     {0xFB04, U"ffl"},
      {0xFB05, U"\u017Ft"}, {0xFB06, U"st"}};
  for (const Ligature& l : kLigatures) {
    if (l.from == c) return l.to;
  }
  return nullptr;
}

std::u32string nfkc_char(char32_t c) {
  std::u32string one(1, c);
  std::string utf8 = encode_utf8(one);
  utf8proc_uint8_t* out = utf8proc_NFKC(reinterpret_cast<const utf8proc_uint8_t*>(utf8.c_str()));
  if (out == nullptr) throw Error("utf8proc NFKC failed");
  std::u32string result = decode_utf8(reinterpret_cast<const char*>(out));
  std::free(out);
  return result;
}

// fix_character_width (ftfy.chardata.WIDTH_MAP): U+3000 and the NFKC forms of
// U+FF01..U+FFEF.
const std::u32string* width_replacement(char32_t c) {
  static const std::u32string kSpace = U" ";
  static const auto* table = [] {
    auto* t = new std::u32string[0xFFF0 - 0xFF01];
    for (char32_t ch = 0xFF01; ch < 0xFFF0; ++ch) t[ch - 0xFF01] = nfkc_char(ch);
    return t;
  }();
  if (c == 0x3000) return &kSpace;
  if (c < 0xFF01 || c >= 0xFFF0) return nullptr;
  const std::u32string& alt = table[c - 0xFF01];
  return (alt.size() == 1 && alt[0] == c) ? nullptr : &alt;
}

char32_t uncurl(char32_t c) {
  if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) return U'\'';
  if (c >= 0x201C && c <= 0x201F) return U'"';
  return c;
}

bool is_high_surrogate(char32_t c) { return c >= 0xD800 && c <= 0xDBFF; }
bool is_low_surrogate(char32_t c) { return c >= 0xDC00 && c <= 0xDFFF; }

bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

bool is_ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// ftfy's ANSI_RE: ESC '[' (\d|;)* [a-zA-Z], where \d is any Unicode Nd digit.
size_t terminal_escape_length(const std::u32string& s, size_t i) {
  if (s[i] != 0x1B || i + 1 >= s.size() || s[i + 1] != U'[') return 0;
  size_t k = i + 2;
  while (k < s.size() && (s[k] == U';' || category(s[k]) == UTF8PROC_CATEGORY_ND)) ++k;
  return (k < s.size() && is_ascii_letter(s[k])) ? k + 1 - i : 0;
}

std::u32string nfc(const std::u32string& s) {
  std::string utf8 = encode_utf8(s);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                   static_cast<utf8proc_ssize_t>(utf8.size()), &out,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("utf8proc NFC failed: ") + utf8proc_errmsg(n));
  std::u32string result = decode_utf8(std::string(reinterpret_cast<const char*>(out), n));
  std::free(out);
  return result;
}

// One pass of everything fix_and_explain applies after fix_encoding.
std::u32string fix_once(const std::u32string& in) {
  std::u32string s;
  s.reserve(in.size());
  // fix_c1_controls, fix_latin_ligatures and fix_character_width fused into one
  // pass: no replacement one of them makes is input to a later one.
  for (char32_t c : in) {
    c = c1_to_cp1252(c);
    if (const char32_t* lig = ligature(c)) {
      s += lig;
    } else if (const std::u32string* wide = width_replacement(c)) {
      s += *wide;
    } else {
      s.push_back(c);
    }
  }
  std::u32string t;
  t.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {  // uncurl_quotes + fix_line_breaks
    char32_t c = uncurl(s[i]);
    if (c == U'\r') {
      if (i + 1 < s.size() && s[i + 1] == U'\n') ++i;
      c = U'\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      c = U'\n';
    }
    t.push_back(c);
  }
  s.clear();
  for (size_t i = 0; i < t.size(); ++i) {  // fix_surrogates
    if (is_high_surrogate(t[i]) && i + 1 < t.size() && is_low_surrogate(t[i + 1])) {
      s.push_back(0x10000 + ((t[i] - 0xD800) << 10) + (t[i + 1] - 0xDC00));
      ++i;
    } else if (is_high_surrogate(t[i]) || is_low_surrogate(t[i])) {
      s.push_back(0xFFFD);
    } else {
      s.push_back(t[i]);
    }
  }
  t.clear();
  for (size_t i = 0; i < s.size(); ++i) {  // remove_terminal_escapes
    if (size_t skip = terminal_escape_length(s, i)) {
      i += skip - 1;
    } else {
      t.push_back(s[i]);
    }
  }
  s.clear();
  for (char32_t c : t) {  // remove_control_chars
    if (!is_removed_control(c)) s.push_back(c);
  }
  return nfc(s);
}

std::u32string fix_segment(std::u32string text, bool unescape) {
  while (true) {
    std::u32string fixed = fix_once(unescape ? ftfy_unescape_html(text) : text);
    if (fixed == text) return fixed;
    text = std::move(fixed);
  }
}

// --- str.lower() -------------------------------------------------------------

bool is_case_ignorable(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      break;
  }
  // Word_Break MidLetter, MidNumLet and Single_Quote.
  static const char32_t kMidWord[] = {0x0027, 0x002E, 0x003A, 0x00B7, 0x0387, 0x055F,
                                      0x05F4, 0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                      0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  for (char32_t m : kMidWord) {
    if (m == c) return true;
  }
  return false;
}

bool is_cased(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
      return true;
    default:
      break;
  }
  const auto cp = static_cast<utf8proc_int32_t>(c);
  if (utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp) return true;
  return in_ranges(kOtherCased, c);
}

// CPython's Final_Sigma test: cased, case-ignorable*, SIGMA, not followed by
// case-ignorable* cased.
bool is_final_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && is_case_ignorable(s[k])) ++k;
  return k == s.size() || !is_cased(s[k]);
}

std::u32string py_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x0130) {  // the one unconditional multi-character lowercase mapping
      out += U"i\u0307";
    } else if (c == 0x03A3) {
      out.push_back(is_final_sigma(s, i) ? 0x03C2 : 0x03C3);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::u32string py_strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace

// --- UTF-8 ---------------------------------------------------------------

std::u32string decode_utf8(const std::string& bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    int len = 0;
    char32_t c = 0, min = 0;
    if (b < 0x80) {
      len = 1;
      c = b;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
      c = b & 0x1F;
      min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      c = b & 0x0F;
      min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      c = b & 0x07;
      min = 0x10000;
    } else {
      throw Error("text is not valid UTF-8 (bad byte at offset " + std::to_string(i) + ")");
    }
    if (i + len > n) throw Error("text is not valid UTF-8 (truncated sequence at end)");
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        throw Error("text is not valid UTF-8 (bad byte at offset " + std::to_string(i + k) + ")");
      }
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF) {
      throw Error("text is not valid UTF-8 (bad sequence at offset " + std::to_string(i) + ")");
    }
    out.push_back(c);
    i += len;
  }
  return out;
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

// --- character classes -------------------------------------------------------

bool is_letter(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return true;
    case UTF8PROC_CATEGORY_CN:
      return in_ranges(kNewerLetters, c);
    default:
      return false;
  }
}

bool is_number(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    case UTF8PROC_CATEGORY_CN:
      return in_ranges(kNewerNumbers, c);
    default:
      return false;
  }
}

// Unicode White_Space, which is what the `regex` module means by \s.
bool is_regex_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// str.isspace() also counts the information separators U+001C..U+001F.
bool is_py_space(char32_t c) { return is_regex_space(c) || (c >= 0x1C && c <= 0x1F); }

// --- the pipeline ------------------------------------------------------------

std::u32string fix_text(const std::u32string& text) {
  constexpr size_t kMaxSegment = 1000000;  // TextFixerConfig.max_decode_length
  std::u32string out;
  // unescape_html="auto": the first segment holding '<' turns it off for the
  // rest of the text, because fix_text keeps the modified config.
  bool unescape = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t brk = text.find(U'\n', pos);
    size_t end = brk == std::u32string::npos ? text.size() : brk + 1;
    if (end - pos > kMaxSegment) end = pos + kMaxSegment;
    std::u32string segment = text.substr(pos, end - pos);
    if (unescape && segment.find(U'<') != std::u32string::npos) unescape = false;
    out += fix_segment(std::move(segment), unescape);
    pos = end;
  }
  return out;
}

std::u32string clean_lower(const std::u32string& text) {
  // basic_clean
  std::u32string s = py_strip(html_unescape(html_unescape(fix_text(text))));
  // whitespace_clean: re.sub(r"\s+", " ") then strip()
  std::u32string collapsed;
  collapsed.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (is_regex_space(s[i])) {
      collapsed.push_back(U' ');
      while (i < s.size() && is_regex_space(s[i])) ++i;
    } else {
      collapsed.push_back(s[i++]);
    }
  }
  return py_lower(py_strip(collapsed));
}

}  // namespace sam3::text
