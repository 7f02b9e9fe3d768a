"""Complexity figures: true counts, and the official (old-thop) ones reproduced exactly."""

import math

import pytest
import torch

import dcn
from adfnet.cli.complexity import main
from adfnet.complexity import count_macs, count_parameters
from adfnet.models import build_model
from adfnet.models.ops import use_formulation


@pytest.fixture(scope="module", params=["adfnet", "adfnet_l"])
def model(request):
    with torch.device("meta"):  # counting needs shapes only
        return request.param, build_model(request.param)


OFFICIAL = {"adfnet": (7_650_979, 13_909_240_672), "adfnet_l": (28_856_675, 46_212_299_552)}
TRUE = {  # (parameters, DCN main convolution MACs, dynamic filtering MACs) at 1x3x128x128
    # DConv: 9 x C x pixels at (C, size) = (128, 32), (64, 64), (32, 128); MDCB: 3 dilations x 9 x mid x pixels
    "adfnet": (
        8_628_579,
        7 * 150_994_944,
        9 * (128 * 32**2 + 64 * 64**2 + 32 * 128**2) + 27 * (64 * 32**2 + 64 * 64**2 + 32 * 128**2),
    ),
    "adfnet_l": (
        32_765_667,
        7 * 603_979_776,
        9 * (256 * 32**2 + 128 * 64**2 + 64 * 128**2) + 27 * (128 * 32**2 + 128 * 64**2 + 64 * 128**2),
    ),
}


def test_thop_convention_reproduces_official_figures(model):
    name, net = model
    assert count_parameters(net, thop_convention=True) == OFFICIAL[name][0]
    assert count_macs(net, (1, 3, 128, 128), thop_convention=True) == {"total": OFFICIAL[name][1]}


def test_true_counts_include_dcn_and_dynamic_filtering(model):
    name, net = model
    params, dcn_macs, filter_macs = TRUE[name]
    macs = count_macs(net, (1, 3, 128, 128))
    assert count_parameters(net) == params
    assert macs["dcn"] == dcn_macs  # Cout * Cin * 9 per pixel, seven DCNs
    assert macs["dynamic_filter"] == filter_macs  # 9 per channel and pixel: 3 DConv + 3x3 MDCB branches
    assert macs["other"] == 0
    assert macs["convolution"] == _hand_counted_conv_macs(net, (1, 3, 128, 128))
    assert macs["total"] == macs["convolution"] + dcn_macs + filter_macs


def _hand_counted_conv_macs(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Every static conv from its shapes: output elements x (Cin/groups) x kernel taps; a transposed conv
    multiplies each input element by Cout/groups x taps (the DCN main convs are not nn.Conv modules)."""
    total = 0

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, dcn.ModulatedDeformConvPack):  # its offset/mask predictor, run as two functional convs
            predictor = module.conv_offset_mask
            pixels = output.shape[0] * output.shape[2] * output.shape[3]
            total += pixels * predictor.out_channels * predictor.in_channels * math.prod(predictor.kernel_size)
            return
        taps = math.prod(module.kernel_size)
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels // module.groups * taps
        else:
            total += output.numel() * module.in_channels // module.groups * taps

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d, dcn.ModulatedDeformConvPack)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, convs)]
    with torch.device("meta"), use_formulation("reference"):  # the fast one folds the fusion convs into MFI
        net(torch.empty(shape))
    for h in handles:
        h.remove()
    return total


def test_gray_thop_figure_and_cli(capsys):
    main(["--model", "adfnet", "--size", "128", "--n_colors", "1", "--thop_convention"])
    out = capsys.readouterr().out
    assert "7,649,825" in out and "13.890333536 G" in out
    main(["--model", "ADFNet-L", "--size", "128"])
    assert "32,765,667" in capsys.readouterr().out
