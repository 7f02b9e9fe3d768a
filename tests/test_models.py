"""ADFNet blocks and builder: sizes, block semantics against direct computations, ablations, errors."""

import math

import numpy as np
import pytest
import torch

import dcn
from adfnet.models import CB, DCB, MCB, MDCB, MFI, ADFNet, DConv, build_model, dynamic_filter


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, n_colors, count",
    [
        ("adfnet", 3, 8_628_579),
        ("adfnet", 1, 8_627_425),
        ("adfnet_l", 3, 32_765_667),
        ("ADFNet-L", 3, 32_765_667),
    ],
)
def test_parameter_counts(name, n_colors, count):
    with torch.device("meta"):
        model = build_model(name, n_colors)
    assert n_params(model) == count
    assert not list(model.buffers())


def loop_dynamic_filter(x, kernels, d):
    """out[b,c,h,w] = sum over taps (i, j) of x[b,c,h+d(i-1),w+d(j-1)] * kernels[b,9c+3i+j,h,w], zero outside."""
    x, kernels = x.numpy(), kernels.numpy()
    b_, c_, h_, w_ = x.shape
    out = np.zeros_like(x)
    for b in range(b_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    for i in range(3):
                        for j in range(3):
                            y, z = h + d * (i - 1), w + d * (j - 1)
                            if 0 <= y < h_ and 0 <= z < w_:
                                out[b, c, h, w] += x[b, c, y, z] * kernels[b, 9 * c + 3 * i + j, h, w]
    return torch.from_numpy(out)


def test_dconv_matches_per_pixel_loop():
    torch.manual_seed(0)
    m = DConv(3).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = loop_dynamic_filter(x, m.afg(x), 1)
        assert torch.allclose(m(x), expected, atol=1e-12)


def test_dilated_dynamic_filter_matches_loop():
    x, k = torch.randn(1, 2, 7, 8, dtype=torch.float64), torch.randn(1, 18, 7, 8, dtype=torch.float64)
    assert torch.allclose(dynamic_filter(x, k, 3), loop_dynamic_filter(x, k, 3), atol=1e-12)


def test_dconv_gradcheck():
    torch.manual_seed(0)
    m = DConv(2).double()
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    k = torch.randn(1, 18, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: dynamic_filter(a, b, 2), (x, k))
    assert torch.autograd.gradgradcheck(lambda a, b: dynamic_filter(a, b, 1), (x, k))


def test_mfi_matches_hand_computation():
    f = torch.tensor([[[[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], [[2.0, 2.0, -4.0], [1.0, 0.0, 0.5]]]], dtype=torch.float64)
    _, K, H, W = f.shape

    def gate(values):
        return 2 / (1 + math.exp(-sum(values) / len(values)))

    a_c = [gate([f[0, k, h, w].item() for h in range(H) for w in range(W)]) for k in range(K)]
    X = [[[a_c[k] * f[0, k, h, w].item() for w in range(W)] for h in range(H)] for k in range(K)]
    a_h = [gate([X[k][h][w] for k in range(K) for w in range(W)]) for h in range(H)]
    a_w = [gate([X[k][h][w] for k in range(K) for h in range(H)]) for w in range(W)]
    out = [[[X[k][h][w] * (1 + a_h[h] + a_w[w]) for w in range(W)] for h in range(H)] for k in range(K)]
    assert torch.allclose(MFI()(f), torch.tensor([out], dtype=torch.float64), atol=1e-12)
    assert not list(MFI().parameters())


def test_mdcb_shares_one_kernel_set_across_dilations():
    """Each branch's input is the reduced xr filtered at its dilation with the one kernel tensor
    generated from the full-width input: recomputed here by hand with the unfold formulation."""
    from adfnet.models.ops import dynamic_filter_reference

    torch.manual_seed(0)
    m = MDCB(16, 8).eval()
    seen = []
    for branch in (m.branch_1, m.branch_3, m.branch_5):
        branch.register_forward_pre_hook(lambda mod, args: seen.append((mod.dilation, args[0])))
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        m(x)
        kernels = m.generate_kernel([x, m.offset(x)])
        xr = m.conv(x)
    assert kernels.shape == (1, 9 * 8, 12, 12) and xr.shape == (1, 8, 12, 12)
    assert [d for d, _ in seen] == [1, 3, 5]
    for d, filtered in seen:
        torch.testing.assert_close(filtered, dynamic_filter_reference(xr, kernels, d), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", dcn.available_backends())
@pytest.mark.parametrize("cls", [CB, DCB, MCB, MDCB])
def test_blocks_keep_shape_and_backprop(cls, backend):
    m = cls(16)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with dcn.use_backend(backend):  # in-place activations must not break any backend's backward
        out = m(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in m.parameters())


VARIANTS = {  # Table 4 row: (options, block types of (encoder stage, decoder stage))
    "ADFNet (decoder only)": ({}, (CB, MCB), (DCB, MDCB)),
    "without DCB": ({"dcb": False}, (CB, MCB), (CB, MDCB)),
    "without MDCB": ({"mdcb": False}, (CB, MCB), (DCB, MCB)),
    "without DCB and MDCB": ({"dcb": False, "mdcb": False}, (CB, MCB), (CB, MCB)),
    "without MFI": ({"mfi": False}, (CB, MCB), (DCB, MDCB)),
    "encoder only": ({"placement": "encoder"}, (DCB, MDCB), (CB, MCB)),
    "everywhere": ({"placement": "everywhere"}, (DCB, MDCB), (DCB, MDCB)),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ablation_variants(variant):
    options, enc, dec = VARIANTS[variant]
    model = ADFNet(1, (8, 8, 16, 16), **options)  # small widths: the options are build_model's
    for stage in (model.fe1, model.fe2, model.fe3, model.cfe):
        assert tuple(map(type, stage.fe)) == enc
    for stage in (model.dfe3, model.dfe2, model.dfe1):
        assert tuple(map(type, stage.fe)) == dec
    has_mfi = [isinstance(m.attention, MFI) for m in model.modules() if isinstance(m, (MCB, MDCB))]
    assert has_mfi == [options.get("mfi", True)] * 7
    x = torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        assert model(x).shape == x.shape
    with torch.device("meta"):  # the same options through the public builder, at full width
        built = build_model("adfnet", 3, **options)
    assert tuple(map(type, built.cfe.fe)) == enc and tuple(map(type, built.dfe1.fe)) == dec


def test_global_residual():
    model = ADFNet(3, (8, 8, 16, 16))
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), x)  # output = tail(features) + input


def test_errors():
    model = ADFNet(1, (8, 8, 16, 16))
    with pytest.raises(ValueError, match="divisible by 8.*pad"):
        model(torch.rand(1, 1, 20, 16))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("unet")  # dncnn and rdn are models now (tests/test_backbones.py)
    with pytest.raises(ValueError, match="n_colors"):
        build_model("adfnet", n_colors=2)
    with pytest.raises(ValueError, match="unknown model option.*widths"):
        build_model("adfnet", widths=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="placement"):
        build_model("adfnet", placement="bottleneck")


@pytest.mark.parametrize("backend", dcn.available_backends())
def test_small_adfnet_compiles(backend):
    """torch.compile traces the whole network (DCN op and dynamic filtering included) without graph breaks,
    and the compiled forward and gradients equal eager ones."""
    torch.manual_seed(0)
    model = ADFNet(1, (8, 8, 16, 16))
    x = torch.rand(1, 1, 16, 16)
    with dcn.use_backend(backend):
        eager = model(x)
        eager_grad = torch.autograd.grad(eager.square().sum(), model.head.weight)[0]
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        out = compiled(x)
        grad = torch.autograd.grad(out.square().sum(), model.head.weight)[0]
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad, eager_grad)


def test_dynamic_filter_opcheck():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    kernels = torch.rand(2, 27, 5, 6, dtype=torch.float64, requires_grad=True)
    for dilation in (1, 3):
        torch.library.opcheck(torch.ops.adfnet.dynamic_filter, (x, kernels, dilation))
