"""The C++ tokenizer's committed golden data must match what the official code produces now."""
import importlib.util
import json
import os

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


def test_unicode_ranges_are_current(gen_cases):
    assert _read(gen_cases.RANGES_INC) == gen_cases.unicode_ranges_text()


def test_html_entities_are_current(gen_entities):
    assert _read(gen_entities.OUT) == gen_entities.render()


def test_html_entities_match_ftfy(gen_entities):
    import html.entities

    from ftfy.chardata import HTML_ENTITIES

    ours = {"&" + k: v for k, v in html.entities.html5.items() if k.endswith(";")}
    ours.update({"&" + k: v for k, v in gen_entities.upper_entities().items()})
    assert ours == HTML_ENTITIES
