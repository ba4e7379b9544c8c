"""The default CPU schedules fire on the kernels they target and keep results exact."""
import numpy as np
import torch


def _compile(module, inputs, schedule=True):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.lowering.pipeline import build_pipeline, optimize

    ep = torch.export.export(module, tuple(inputs))
    mod, params = relax.frontend.detach_params(from_exported_program(ep, keep_params_as_input=True))
    target = host_target()
    opt = optimize(mod, target, schedule=schedule)
    vm = relax.VirtualMachine(tvm.compile(opt, target=target, relax_pipeline=build_pipeline()), tvm.cpu())
    args = [tvm.runtime.tensor(x.numpy()) for x in inputs] + params["main"]
    return opt, [o.numpy() for o in vm["main"](*args)], ep.module()(*inputs)


class Block(torch.nn.Module):
    """A linear, a conv, an attention softmax and a layer norm: one of each kernel kind."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 48)
        self.conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.norm = torch.nn.LayerNorm(48)

    def forward(self, x, y):
        h = self.norm(torch.nn.functional.gelu(self.lin(x)))
        att = torch.softmax(h @ h.transpose(1, 2), -1)
        return att @ h, self.conv(y)


def test_every_kernel_is_scheduled_and_results_match():
    import tvm

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 40, 64, generator=g), torch.randn(1, 16, 24, 24, generator=g)
    with torch.no_grad():
        opt, got, ref = _compile(Block().eval(), [x, y])
    funcs = {str(gv.name_hint): f for gv, f in opt.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    unscheduled = [n for n, f in funcs.items() if not (f.attrs and "tirx.is_scheduled" in f.attrs)]
    assert not unscheduled, unscheduled
    text = "\n".join(f.script() for f in funcs.values())
    assert "T.parallel" in text and "T.vectorized" in text
    assert '"local"' in text  # register-tile accumulators of the contraction rule
    for g_, r in zip(got, ref):
        np.testing.assert_allclose(g_, r.detach().numpy(), rtol=1e-5, atol=1e-5)
