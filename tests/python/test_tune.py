"""`sam3-tvm tune` writes a MetaSchedule database that `compile` then applies."""
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tuning"))
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--config", "tiny",
                        "--component", "text_encoder", "--trials", "2", "--top", "1", "--db", d],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(d, "database_tuning_record.json")) as f:
        assert sum(1 for line in f if line.strip()) >= 1
    return d


def _text_encoder(monkeypatch, db):
    import tvm
    from tvm import relax

    from sam3_tvm.model import components as C
    from sam3_tvm.lowering import pipeline
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.model.builder import build_model

    if db:
        monkeypatch.setenv("SAM3_TVM_TUNING_DB", db)
    else:
        monkeypatch.setenv("SAM3_TVM_TUNING_DB", "/nonexistent")
    model = build_model("tiny", seed=0)
    rope.realify(model)
    mod, params, names = import_component("text_encoder", model, model.sam3_tvm_config)
    mod, arrays, _ = lift_params("text_encoder", mod, params, names)
    target = host_target()
    opt = pipeline.optimize(mod, target)
    ex = tvm.compile(opt, target=target, relax_pipeline=pipeline.build_pipeline())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    ids = [tvm.runtime.tensor(x.numpy()) for x in C.example_inputs("text_encoder", model.sam3_tvm_config)]
    out = vm["main"](*ids, *[tvm.runtime.tensor(a) for a in arrays])
    kernels = {gv.name_hint: f.script() for gv, f in opt.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    return kernels, out[0].numpy()


def test_compile_applies_the_database(db, monkeypatch):
    tuned, out_tuned = _text_encoder(monkeypatch, db)
    default, out_default = _text_encoder(monkeypatch, None)
    assert tuned.keys() == default.keys()
    assert sum(tuned[k] != default[k] for k in tuned) >= 1  # the tuned kernel replaced ours
    np.testing.assert_allclose(out_tuned, out_default, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--trials", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "at least 1" in r.stderr


def test_kernel_filter_names_a_missing_kernel():
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--config", "tiny",
                        "--component", "text_encoder", "--kernel", "no_such_kernel", "--trials", "1",
                        "--db", "/tmp/sam3-tune-unused"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "no kernel of text_encoder has 'no_such_kernel'" in r.stderr
