"""The C++ tokenizer's committed golden data must match what the official code produces now."""
import importlib.util
import json
import os
import re
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(relpath, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen_cases():
    return _load("tests/cpp/data/gen_tokenizer_cases.py", "gen_tokenizer_cases")


@pytest.fixture(scope="module")
def gen_entities():
    return _load("scripts/gen_html_entities.py", "gen_html_entities")


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_golden_cases_are_current(gen_cases):
    committed_text = _read(gen_cases.CASES_JSON)
    fresh_text = gen_cases.cases_json()
    committed, fresh = json.loads(committed_text), json.loads(fresh_text)
    assert [c["text"] for c in committed] == [c["text"] for c in fresh]
    for old, new in zip(committed, fresh):
        assert old["ids"] == new["ids"], old["text"]
    assert committed_text == fresh_text


def test_golden_cases_cover_truncation_and_quirks(gen_cases):
    cases = json.loads(_read(gen_cases.CASES_JSON))
    assert len(cases) >= 40
    assert all(len(c["ids"]) == gen_cases.CONTEXT_LENGTH for c in cases)
    assert any(c["ids"][-1] == 49407 for c in cases)  # a truncated one
    assert any(0 in c["ids"][1 : c["ids"].index(49407)] for c in cases)  # id 0 inside


def _tables(text):
    """{table name: set of code points} of a generated unicode_ranges.inc."""
    tables, name = {}, None
    for line in text.splitlines():
        m = re.match(r"static const Range (\w+)\[\] = \{", line)
        if m:
            name = m.group(1)
            tables[name] = set()
        m = re.match(r"\s+\{0x([0-9A-F]+), 0x([0-9A-F]+)\},", line)
        if m:
            tables[name].update(range(int(m.group(1), 16), int(m.group(2), 16) + 1))
    return tables


def test_unicode_ranges_are_current(gen_cases):
    """The tables complete libutf8proc's Unicode 15.0 (Debian 12) to what the official
    tokenizer's `regex` and CPython 3.12 see. Generated under 3.12 (Unicode 15.0) they must
    be identical; under a Python with newer Unicode data (3.13: 15.1) the generator no
    longer lists letters its unicodedata now knows, so there the committed tables may only
    list more, and each extra code point must be a letter / number in that newer data."""
    committed, fresh = _read(gen_cases.RANGES_INC), gen_cases.unicode_ranges_text()
    if unicodedata.unidata_version == "15.0.0":
        assert committed == fresh
        return
    old, new = _tables(committed), _tables(fresh)
    assert old.keys() == new.keys()
    for name, cls in (("kNewerLetters", "L"), ("kNewerNumbers", "N"), ("kOtherCased", None)):
        assert not new[name] - old[name], name
        for cp in old[name] - new[name]:
            assert cls and unicodedata.category(chr(cp))[0] == cls, (name, hex(cp))


def test_html_entities_are_current(gen_entities):
    assert _read(gen_entities.OUT) == gen_entities.render()


def test_html_entities_match_ftfy(gen_entities):
    import html.entities

    from ftfy.chardata import HTML_ENTITIES

    ours = {"&" + k: v for k, v in html.entities.html5.items() if k.endswith(";")}
    ours.update({"&" + k: v for k, v in gen_entities.upper_entities().items()})
    assert ours == HTML_ENTITIES
