#!/usr/bin/env python3
"""Golden data for the C++ tokenizer, produced by the official SAM 3 tokenizer.

Writes
  tests/cpp/data/tokenizer_cases.json   [{"text": ..., "ids": [32 ids]}, ...]
  runtime/src/core/unicode_ranges.inc   character ranges utf8proc cannot supply
and, with --check, only verifies that both files are current.

Every case must lie inside what the C++ port reproduces: ftfy's mojibake repair
(fix_encoding) is not ported, so a case it would alter is rejected here rather
than silently kept. Run with the project venv: .venv/bin/python <this file>.
"""
import json
import os
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CASES_JSON = os.path.join(HERE, "tokenizer_cases.json")
RANGES_INC = os.path.join(ROOT, "runtime", "src", "core", "unicode_ranges.inc")
CONTEXT_LENGTH = 32

TEXTS = [
    # plain prompts, case, whitespace
    "a red car",
    "A Red CAR",
    "",
    "   ",
    "\t\n  \r\n ",
    "  person,  wearing\ta\nhat  ",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    # punctuation, and the ids 0 / 256 that "!" can produce
    "!",
    "wow!~",
    "hello!!! what?? ... (yes) [no] {maybe} @#$%^*_+=|\\/`",
    # contractions
    "it's the dog's toy; don't, they're, we've, i'm, you'll, he'd",
    "IT'S THE DOG'S TOY",
    "rock'n'roll 'quoted' ''s x's",
    # digits and other numbers
    "3 cats and 42 dogs on 2024-05-01 at 3.14",
    "x\u00b2 H\u2082O \u00bd \u2460 \u0663\u0664 \u2167",
    # accents, composition, special lowercasing
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e na\u00efve fa\u00e7ade",
    "cafe\u0301 and\u0308",
    "\u0130stanbul",
    "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3 \u03a3\u039f\u03a6\u0399\u0391's",
    "Stra\u00dfe Z\u00fcrich's 2nd-best caf\u00e9 (\u21161)",
    "don'\u017f <\u017ftart_of_text> a\u0345b",
    # scripts
    "\u65e5\u672c\u306e\u732b\u3068\u72ac",
    "\ud55c\uad6d\uc5b4 \uace0\uc591\uc774",
    "\u041a\u0440\u0430\u0441\u043d\u0430\u044f \u043c\u0430\u0448\u0438\u043d\u0430",
    "\u0642\u0637\u0629 \u0633\u0648\u062f\u0627\u0621",
    "\u092c\u093f\u0932\u094d\u0932\u0940 \u0e41\u0e21\u0e27",
    # emoji
    "\U0001f436 dog \U0001f431\U0001f697 \U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f \U0001f44d\U0001f3fd",
    # ftfy: quotes, ligatures, widths, line breaks, controls
    "\u201csmart quotes\u201d and \u2018single\u2019 \u201ahere\u201b \u02bcn",
    "the \ufb01sh \ufb02ew \ufb00 \ufb03 \ufb04 \ufb05 \ufb06 \u0133 \u01c6",
    "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 \uff11\uff12\uff13 \uff76\uff80\uff76\uff85 \uff76\uff9e",
    "line\u2028sep\u2029para\r\nwin\rmac",
    "\x93quoted\x94 \x85 \x80 \x81 a\x96b caf\x82",
    "\x1b[31mred\x1b[0m text\x07 \x7f",
    "zero\u200bwidth soft\u00adhyphen\ufeffbom \u2060joiner",
    "non\u00a0breaking\u2003em\u3000ideographic\u1680ogham",
    # HTML entities: named, numeric, nested, ftfy's all-caps names
    "Tom &amp; Jerry &copy; &hellip; &nbsp;x",
    "&quot;x&quot; &#39;single&#39; &#x27;hex&#x27; &#8364; &#X41;",
    "fish &amp;amp; chips &amp;amp;amp;lt;",
    "P&EACUTE;REZ &ntilde; &NTILDE; &nTILDE; BUNDESSTRA&SZLIG;E",
    "&notit; &copy 2024 &ampx &#59; &#65a; &frac12;",
    "&#128; &#150; &#0; &#x110000; &#55296; &#1; &#99999999999999999999;",
    # a literal '<' turns ftfy's unescaping off; html.unescape still runs twice
    "a<b &amp;amp; c &amp;amp;amp;gt; &lt;",
    "first line &amp;\nsecond < line &amp;amp;\nthird &amp;amp;",
    "<start_of_text> hi <end_of_text>",
    # length: exactly full, one over, far over
    " ".join(["a"] * 30),
    " ".join(["a"] * 31),
    "a photo of " * 20,
]


def official_tokenizer():
    sys.path.insert(0, os.path.join(ROOT, "compiler"))
    from sam3_tvm.model import shims

    shims.apply()
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3_tvm.model.builder import bpe_vocab_path

    return SimpleTokenizer(bpe_path=bpe_vocab_path())


def _check_supported(text):
    import ftfy

    if ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False):
        raise ValueError("case %r needs ftfy's mojibake repair, which the C++ port lacks" % text)


def cases(tokenizer=None):
    """The golden cases, computed now with the official tokenizer."""
    tokenizer = tokenizer or official_tokenizer()
    out = []
    for text in TEXTS:
        _check_supported(text)
        ids = tokenizer([text], context_length=CONTEXT_LENGTH)[0].tolist()
        out.append({"text": text, "ids": ids})
    return out


def cases_json(tokenizer=None):
    rows = [json.dumps(case, ensure_ascii=True) for case in cases(tokenizer)]
    return "[\n" + ",\n".join(rows) + "\n]\n"


# --- unicode_ranges.inc ----------------------------------------------------------------


def _ranges(codepoints):
    out = []
    for c in codepoints:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def _newer_class(pattern, prefix):
    # `regex` ships newer Unicode tables than Python's unicodedata / utf8proc (15.0);
    # only code points unassigned in 15.0 differ (checked below).
    import regex

    compiled = regex.compile(pattern)
    found = []
    for c in range(0x110000):
        in_regex = compiled.match(chr(c)) is not None
        if in_regex != unicodedata.category(chr(c)).startswith(prefix):
            if not in_regex or unicodedata.category(chr(c)) != "Cn":
                raise ValueError("regex and unicodedata disagree on assigned U+%04X" % c)
            found.append(c)
    return found


def _other_cased():
    # CPython's Cased property as str.lower()'s final-sigma rule sees it, minus what
    # utf8proc already implies (Lu/Ll/Lt or a case mapping). Probe: "A"+c+SIGMA lowers
    # to a final sigma iff c is case-ignorable or cased; "A"+SIGMA+c iff c is
    # case-ignorable or uncased.
    found = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        before = ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"
        after = ("A\u03a3" + ch).lower()[1] == "\u03c2"
        cased = before and not after
        implied = unicodedata.category(ch) in ("Lu", "Ll", "Lt") or ch.lower() != ch or ch.upper() != ch
        if cased and not implied:
            found.append(c)
    return found


def unicode_ranges_text():
    import regex

    tables = [
        ("kNewerLetters", "\\p{L} in regex %s, unassigned in Unicode 15.0" % regex.__version__,
         _newer_class(r"\p{L}", "L")),
        ("kNewerNumbers", "\\p{N} in regex %s, unassigned in Unicode 15.0" % regex.__version__,
         _newer_class(r"\p{N}", "N")),
        ("kOtherCased", "Cased for CPython's str.lower() without Lu/Ll/Lt or a case mapping",
         _other_cased()),
    ]
    lines = [
        "// GENERATED by tests/cpp/data/gen_tokenizer_cases.py from Python %d.%d's unicodedata"
        % sys.version_info[:2],
        "// and the `regex` module. Do not edit by hand. Included by text_clean.cpp.",
    ]
    for name, comment, codepoints in tables:
        lines += ["", "// " + comment + ".", "static const Range %s[] = {" % name]
        for first, last in _ranges(codepoints):
            lines.append("    {0x%04X, 0x%04X}," % (first, last))
        lines.append("};")
    return "\n".join(lines) + "\n"


def main():
    outputs = [(CASES_JSON, cases_json()), (RANGES_INC, unicode_ranges_text())]
    check = "--check" in sys.argv[1:]
    for path, text in outputs:
        if check:
            with open(path, encoding="utf-8") as fh:
                if fh.read() != text:
                    sys.exit("%s is stale; run %s" % (path, os.path.relpath(__file__, ROOT)))
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            print("wrote", path)


if __name__ == "__main__":
    main()
