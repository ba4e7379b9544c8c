// Text cleaning in front of the CLIP BPE, as sam3.model.tokenizer_ve does it:
// ftfy.fix_text, html.unescape twice, whitespace collapse, str.lower().
// Strings are std::u32string of code points because every rule being mirrored
// (Python str methods, `re`/`regex` patterns) counts code points, not bytes.
#pragma once

#include <string>

namespace sam3::text {

// UTF-8 -> code points. Surrogate code points encoded as 3-byte sequences are
// accepted (Python strings can hold them and ftfy repairs them); anything else
// that is not UTF-8 throws sam3::Error.
std::u32string decode_utf8(const std::string& bytes);
std::string encode_utf8(const std::u32string& text);

// Python's html.unescape (HTML5 rules, including names without ';').
std::u32string html_unescape(const std::u32string& text);
// ftfy.fixes.unescape_html: only ';'-terminated names, plus all-caps Latin names.
std::u32string ftfy_unescape_html(const std::u32string& text);

// ftfy.fix_text with its default configuration, minus mojibake repair
// (see tokenizer.cpp for exactly what is and is not reproduced).
std::u32string fix_text(const std::u32string& text);

// SimpleTokenizer's "lower" clean function:
// whitespace_clean(basic_clean(text)).lower().
std::u32string clean_lower(const std::u32string& text);

// Character classes as the `regex` module sees them in the CLIP split pattern.
bool is_letter(char32_t c);       // \p{L}
bool is_number(char32_t c);       // \p{N}
bool is_regex_space(char32_t c);  // \s
bool is_py_space(char32_t c);     // str.isspace()

}  // namespace sam3::text
