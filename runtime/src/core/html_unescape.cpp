// Python's html.unescape and ftfy's stricter unescape_html, code point for code point.
#include <string>
#include <unordered_map>

#include "text_clean.h"

namespace sam3::text {
namespace {

struct EntityEntry {
  const char* name;
  const char* value;
};

#include "html_entities.inc"

using EntityMap = std::unordered_map<std::string, std::u32string>;

EntityMap build_map(const EntityEntry* begin, const EntityEntry* end) {
  EntityMap map;
  for (const EntityEntry* e = begin; e != end; ++e) map.emplace(e->name, decode_utf8(e->value));
  return map;
}

const EntityMap& html5() {
  static const EntityMap map = build_map(std::begin(kHtml5Entities), std::end(kHtml5Entities));
  return map;
}

const EntityMap& upper_names() {
  static const EntityMap map = build_map(std::begin(kUpperEntities), std::end(kUpperEntities));
  return map;
}

const std::u32string* find(const EntityMap& map, const std::string& key) {
  auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

// Entity names are ASCII, so a candidate holding anything else cannot match.
bool to_ascii(const std::u32string& s, size_t begin, size_t end, std::string* out) {
  out->clear();
  for (size_t i = begin; i < end; ++i) {
    if (s[i] >= 0x80) return false;
    out->push_back(static_cast<char>(s[i]));
  }
  return true;
}

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_ascii_alnum(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
int hex_value(char32_t c) {
  if (is_ascii_digit(c)) return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  return static_cast<int>(c - 'A' + 10);
}

// html._invalid_charrefs: what browsers show for references to C0/C1 bytes.
char32_t invalid_charref(uint32_t num, bool* found) {
  static const char32_t kC1[32] = {0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                   0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,   0x017D, 0x8F,
                                   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                   0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  *found = true;
  if (num == 0) return 0xFFFD;
  if (num == 0x0D) return U'\r';
  if (num >= 0x80 && num <= 0x9F) return kC1[num - 0x80];
  *found = false;
  return 0;
}

// html._invalid_codepoints: references to these expand to nothing.
bool invalid_codepoint(uint32_t num) {
  if ((num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F)) return true;
  if (num >= 0x7F && num <= 0x9F) return true;
  if (num >= 0xFDD0 && num <= 0xFDEF) return true;
  return (num & 0xFFFE) == 0xFFFE && num <= 0x10FFFF;
}

// Decodes the digits of a numeric reference; values past U+10FFFF saturate so
// arbitrarily long digit strings behave like Python's unbounded int().
std::u32string numeric_charref(const std::u32string& s, size_t begin, size_t end, int base) {
  uint32_t num = 0;
  for (size_t i = begin; i < end; ++i) {
    num = num * base + hex_value(s[i]);
    if (num > 0x10FFFF) num = 0x110000;
  }
  bool found = false;
  char32_t replacement = invalid_charref(num, &found);
  if (found) return std::u32string(1, replacement);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  if (invalid_codepoint(num)) return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

bool ends_named_ref(char32_t c) {
  return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
         c == ';';
}

}  // namespace

// Mirrors html.unescape: the regex
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// applied left to right, with _replace_charref deciding each match.
std::u32string html_unescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  std::string key;
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < n && s[j] == U'#') {
      size_t k = j + 1;
      int base = 10;
      if (k < n && is_ascii_digit(s[k])) {
        while (k < n && is_ascii_digit(s[k])) ++k;
        out += numeric_charref(s, j + 1, k, base);
      } else if (k + 1 < n && (s[k] == U'x' || s[k] == U'X') && is_ascii_hex(s[k + 1])) {
        base = 16;
        size_t digits = k + 1;
        k = digits;
        while (k < n && is_ascii_hex(s[k])) ++k;
        out += numeric_charref(s, digits, k, base);
      } else {
        out.push_back(s[i++]);  // "&#" without digits is left alone
        continue;
      }
      if (k < n && s[k] == U';') ++k;
      i = k;
      continue;
    }
    size_t k = j;
    while (k < n && k - j < 32 && !ends_named_ref(s[k])) ++k;
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    if (k < n && s[k] == U';') ++k;
    bool replaced = false;
    if (to_ascii(s, j, k, &key)) {
      if (const std::u32string* value = find(html5(), key)) {
        out += *value;
        replaced = true;
      }
    }
    // The standard's rule: the longest known name that prefixes the text wins.
    for (size_t x = k - j - 1; !replaced && x >= 2; --x) {
      if (!to_ascii(s, j, j + x, &key)) continue;
      if (const std::u32string* value = find(html5(), key)) {
        out += *value;
        out.append(s, j + x, k - (j + x));
        replaced = true;
      }
    }
    if (!replaced) out.append(s, i, k - i);
    i = k;
  }
  return out;
}

// Mirrors ftfy.fixes.unescape_html: matches of &#?[0-9A-Za-z]{1,24}; that are
// known names, or numeric references html.unescape fully consumes.
std::u32string ftfy_unescape_html(const std::u32string& s) {
  std::u32string out;
  std::string key;
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    const bool numeric = i + 1 < n && s[i + 1] == U'#';
    size_t j = i + 1 + (numeric ? 1 : 0);
    size_t k = j;
    while (k < n && is_ascii_alnum(s[k])) ++k;
    if (k == j || k - j > 24 || k >= n || s[k] != U';') {
      out.push_back(s[i++]);
      continue;
    }
    ++k;  // the ';'
    const std::u32string match = s.substr(i, k - i);
    if (numeric) {
      std::u32string decoded = html_unescape(match);
      out += decoded.find(U';') == std::u32string::npos ? decoded : match;
    } else {
      to_ascii(s, j, k, &key);
      const std::u32string* value = find(html5(), key);
      if (value == nullptr) value = find(upper_names(), key);
      out += value != nullptr ? *value : match;
    }
    i = k;
  }
  return out;
}

}  // namespace sam3::text
