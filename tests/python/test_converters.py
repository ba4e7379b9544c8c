"""Each importer fix, on a minimal torch module, compiled with TVM and compared with torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F


def _tvm_run(module, *inputs, custom=True, convert_map=None):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.frontend.converters import CONVERTERS
    from sam3_tvm.lowering.pipeline import build_pipeline, optimize

    ep = torch.export.export(module, tuple(inputs))
    mod = from_exported_program(ep, custom_convert_map=convert_map or (CONVERTERS if custom else None))
    target = host_target()
    ex = tvm.compile(optimize(mod, target), target=target, relax_pipeline=build_pipeline())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x.numpy()) for x in inputs])
    return [o.numpy() for o in out]


class GridSample(torch.nn.Module):
    def forward(self, x, grid):
        return (F.grid_sample(x, grid, align_corners=False),)


def test_grid_sample_layout():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 6, 7, generator=g)
    grid = torch.rand(1, 5, 1, 2, generator=g) * 2 - 1  # SAM 3's point grid shape
    (out,) = _tvm_run(GridSample(), x, grid)
    np.testing.assert_allclose(out, GridSample()(x, grid)[0].numpy(), rtol=1e-5, atol=1e-6)


def test_grid_sample_empty_grid():
    x = torch.randn(1, 3, 6, 7)
    grid = torch.zeros(1, 0, 1, 2)
    (out,) = _tvm_run(GridSample(), x, grid)
    assert out.shape == (1, 3, 0, 1)


class FloorDiv(torch.nn.Module):
    def forward(self, x):
        return (x // 2, torch.div(x, 3, rounding_mode="trunc"))


def test_float_floor_and_trunc_division():
    x = torch.arange(-8, 8, dtype=torch.float32) * 1.5
    out = _tvm_run(FloorDiv(), x)
    for o, r in zip(out, FloorDiv()(x)):
        np.testing.assert_array_equal(o, r.numpy())


def test_stock_importer_fails_on_float_floor_division():
    """Documents the bug the converter fixes (if TVM fixes it, drop our converter)."""
    with pytest.raises(Exception, match="same datatype"):
        _tvm_run(FloorDiv(), torch.arange(4, dtype=torch.float32), custom=False)


class CatMixed(torch.nn.Module):
    def forward(self, labels, x):
        pad = -torch.ones(labels.shape[0], 1)          # float, as in SAM's prompt encoder
        empty = torch.zeros(0, x.shape[1])             # empty sequence, as in SAM 3's prompt concat
        return (torch.cat([labels, pad], dim=1), torch.cat([x, empty], dim=0))


def test_cat_promotes_dtypes_and_drops_empty_inputs():
    labels = torch.tensor([[1, 0, 1]], dtype=torch.int32)
    x = torch.randn(4, 3)
    out = _tvm_run(CatMixed(), labels, x)
    for o, r in zip(out, CatMixed()(labels, x)):
        assert o.dtype == r.numpy().dtype
        np.testing.assert_array_equal(o, r.numpy())


class SelectLast(torch.nn.Module):
    def forward(self, x):
        return (x[-1], x[:, -2])


def test_select_negative_index():
    x = torch.randn(6, 5, 4)
    out = _tvm_run(SelectLast(), x)
    for o, r in zip(out, SelectLast()(x)):
        np.testing.assert_array_equal(o, r.numpy())


def test_stock_grid_sample_has_the_layout_bug():
    """Documents the bug our converter fixes: stock output shape is wrong."""
    x = torch.randn(1, 3, 6, 7)
    grid = torch.rand(1, 5, 1, 2) * 2 - 1
    (out,) = _tvm_run(GridSample(), x, grid, custom=False)
    assert out.shape != (1, 3, 5, 1)


class GroupNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.GroupNorm(2, 64)

    def forward(self, x):
        return (self.norm(x),)


@pytest.mark.parametrize("custom", [True, False])
def test_group_norm_statistics_precision(custom):
    """A 32-channel group of a 288x288 map, as in SAM 3's pixel decoder: our
    converter is as accurate as torch against float64; the stock one is not."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 288, 288, generator=g) * 3 + 1.5
    m = GroupNorm().eval()
    with torch.no_grad():
        m.norm.weight.normal_(generator=g)
        m.norm.bias.normal_(generator=g)
        ref64 = torch.nn.functional.group_norm(x.double(), 2, m.norm.weight.double(),
                                               m.norm.bias.double()).numpy()
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.frontend.converters import CONVERTERS
    from sam3_tvm.lowering.pipeline import build_pipeline, optimize

    ep = torch.export.export(m, (x,))
    mod, params = relax.frontend.detach_params(from_exported_program(
        ep, keep_params_as_input=True, custom_convert_map=CONVERTERS if custom else None))
    target = host_target()
    vm = relax.VirtualMachine(tvm.compile(optimize(mod, target), target=target,
                                          relax_pipeline=build_pipeline()), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()), *params["main"])[0].numpy().astype(np.float64)
    rel = np.linalg.norm(out - ref64) / np.linalg.norm(ref64)
    if custom:
        assert rel < 1e-6
    else:
        assert rel > 1e-4  # documents the stock precision problem


@pytest.mark.parametrize("kernel,stride,padding,out_pad", [(2, 2, 0, 0), (3, 2, 1, 1)])
def test_transposed_conv(kernel, stride, padding, out_pad):
    """kernel == stride takes the matmul + pixel-shuffle path; other shapes the stock one."""
    torch.manual_seed(0)
    m = torch.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding,
                                 output_padding=out_pad).eval()
    x = torch.randn(2, 6, 5, 7)
    (out,) = _tvm_run(m, x)
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-5, atol=1e-5)


def test_kernel_equals_stride_transposed_conv_imports_as_matmul():
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.frontend.converters import CONVERTERS

    m = torch.nn.ConvTranspose2d(6, 4, 2, stride=2).eval()
    ep = torch.export.export(m, (torch.randn(1, 6, 5, 7),))
    text = from_exported_program(ep, custom_convert_map=CONVERTERS).script()
    assert "conv2d_transpose" not in text and "R.matmul" in text


@pytest.mark.parametrize("kernel,bias,padding", [(1, True, 0), (1, False, 0), (3, True, 1)])
def test_convolution(kernel, bias, padding):
    """1x1 convs take the matmul path; others the stock conv2d."""
    torch.manual_seed(0)
    m = torch.nn.Conv2d(6, 4, kernel, padding=padding, bias=bias).eval()
    x = torch.randn(2, 6, 5, 7)
    (out,) = _tvm_run(m, x)
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cpu", [False, True], ids=["matmuls", "one-kernel"])
@pytest.mark.parametrize("kernel,bias,batch", [(3, True, 1), (5, False, 1), (3, False, 2)])
def test_same_convolution_on_a_large_map_as_shifted_matmuls(kernel, bias, batch, cpu):
    """Both lowerings of a "same" conv on a large map against torch: the tap matmuls
    (GPU builds) and the one-kernel contraction over taps x channels (CPU builds)."""
    from tvm.relax.frontend.torch import from_exported_program

    from sam3_tvm.frontend.converters import SHIFTED_CONV_MIN_PIXELS, converters

    torch.manual_seed(1)
    m = torch.nn.Conv2d(5, 4, kernel, padding=kernel // 2, bias=bias).eval()
    x = torch.randn(batch, 5, 64, 70)
    assert 64 * 70 >= SHIFTED_CONV_MIN_PIXELS
    (out,) = _tvm_run(m, x, convert_map=converters(cpu=cpu))
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-5, atol=1e-5)
    text = from_exported_program(torch.export.export(m, (x,)),
                                 custom_convert_map=converters(cpu=cpu)).script()
    assert "conv2d" not in text
    assert ("same_conv" in text) == cpu and text.count("R.matmul") == (0 if cpu else kernel ** 2)


def test_patchify_convolution():
    """stride == kernel, no padding (the ViT patch embedding): patches x matmul."""
    torch.manual_seed(2)
    m = torch.nn.Conv2d(3, 8, 4, stride=4).eval()
    x = torch.randn(2, 3, 12, 20)
    (out,) = _tvm_run(m, x)
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-5, atol=1e-5)
