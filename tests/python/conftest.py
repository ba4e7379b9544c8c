import os
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "compiler"))
warnings.filterwarnings("ignore")

SAMPLE = os.path.join(ROOT, "assets", "sample.png")


@pytest.fixture(scope="session")
def tiny_model():
    from sam3_tvm.model.builder import build_model

    return build_model("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """The tiny bundle (seed 0), compiled once per test session; SAM3_TEST_TINY_BUNDLE names
    one already compiled by this compiler (make test-sanitize reuses bundles/tiny)."""
    from sam3_tvm.bundle.writer import compile_bundle, load_manifest

    given = os.environ.get("SAM3_TEST_TINY_BUNDLE")
    if given:
        man = load_manifest(given)
        assert man["config"]["name"] == "tiny" and man["weights_source"] == "random(seed=0)", given
        return given
    out = str(tmp_path_factory.mktemp("bundle") / "tiny")
    compile_bundle("tiny", out, seed=0)
    return out


@pytest.fixture(scope="session")
def official():
    """The official Sam3Processor on the tiny seed-0 model (complex RoPE kept)."""
    from sam3_tvm.model.builder import build_model

    model = build_model("tiny", seed=0)  # applies the CPU shims, which sam3's imports need
    from sam3.model.sam3_image_processor import Sam3Processor

    proc = Sam3Processor(model, resolution=model.sam3_tvm_config.image_size, device="cpu",
                         confidence_threshold=0.0)
    return model, proc
