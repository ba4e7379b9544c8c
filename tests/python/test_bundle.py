"""Export -> import -> compile -> verify of all four components (tiny), and the bundle contract."""
import json
import os
import shutil

import numpy as np
import pytest

from sam3_tvm import BUNDLE_SCHEMA_VERSION
from sam3_tvm.model import components as C
from sam3_tvm.bundle.writer import load_manifest
from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.tools.verify import TOLERANCES, require_pass, verify_bundle


def test_bundle_contents(tiny_bundle):
    man = load_manifest(tiny_bundle)
    assert man["schema_version"] == BUNDLE_SCHEMA_VERSION
    assert set(man["components"]) == set(C.COMPONENTS)
    from safetensors.numpy import load_file

    weights = load_file(os.path.join(tiny_bundle, man["weights"]))
    for name, entry in man["components"].items():
        assert os.path.isfile(os.path.join(tiny_bundle, entry["library"]))
        assert entry["params"] and all(p in weights for p in entry["params"])
    # the grounding head must not drag the backbone's weights along
    assert not any("trunk" in p for p in man["components"]["grounding_head"]["params"])
    assert man["target"]["mcpu"] and man["target"]["num_cores"] >= 1
    assert os.path.getsize(os.path.join(tiny_bundle, man["tokenizer"]["vocab"])) > 1_000_000


def test_verify_tiny_bundle_parity(tiny_bundle, tmp_path):
    rows = verify_bundle(tiny_bundle, json_path=str(tmp_path / "v.json"))
    require_pass(rows)
    comps = {r["component"].split("[")[0] for r in rows}
    assert comps == set(C.COMPONENTS)
    assert max(r["rel_l2"] for r in rows) <= TOLERANCES["tiny"]["rel_l2"]
    assert json.load(open(tmp_path / "v.json"))["rows"]


def test_verify_catches_wrong_weights(tiny_bundle, tmp_path):
    """A bundle whose weights differ from the reference must fail parity."""
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    man = json.load(open(bad / "manifest.json"))
    man["weights_source"] = "random(seed=5)"
    json.dump(man, open(bad / "manifest.json", "w"))
    rows = verify_bundle(str(bad))
    with pytest.raises(Sam3TvmError, match="parity failed"):
        require_pass(rows)


@pytest.mark.parametrize("edit,message", [
    (lambda d, m: m.__setitem__("schema_version", 99), "schema version 99"),
    (lambda d, m: m["compiler"].__setitem__("tvm", "0.1"), "compiled with TVM 0.1"),
    (lambda d, m: os.remove(os.path.join(d, "text_encoder.so")), "bundle file missing"),
    (lambda d, m: os.remove(os.path.join(d, "weights.safetensors")), "bundle file missing"),
    (lambda d, m: m["components"]["text_encoder"].__setitem__("library", "/bin/true"), "not a path inside"),
    (lambda d, m: m.__setitem__("weights", "../weights.safetensors"), "not a path inside"),
    (lambda d, m: (os.remove(os.path.join(d, "text_encoder.so")),
                   os.symlink("/bin/true", os.path.join(d, "text_encoder.so"))), "leads outside the bundle"),
    (lambda d, m: open(os.path.join(d, "grounding_head.so"), "ab").write(b"\0"), "grounding_head.so is corrupt"),
    (lambda d, m: m["sha256"].pop("weights.safetensors"), "no sha256 recorded for weights.safetensors"),
    (lambda d, m: m.pop("sha256"), "no sha256 block"),
])
def test_bad_bundles_are_refused(tiny_bundle, tmp_path, edit, message):
    d = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, d)
    man = json.load(open(os.path.join(d, "manifest.json")))
    edit(d, man)
    json.dump(man, open(os.path.join(d, "manifest.json"), "w"))
    with pytest.raises(Sam3TvmError, match=message):
        load_manifest(d)


def test_runtime_rejects_wrong_input_shape(tiny_bundle):
    from sam3_tvm.bundle.runtime import Bundle

    b = Bundle(tiny_bundle)
    with pytest.raises(Sam3TvmError, match="does not match"):
        b.run("text_encoder", np.zeros((1, 31), np.int64))
