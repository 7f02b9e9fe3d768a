"""ADFNet and SADNet equal the official networks: golden outputs for fixed weights, on every DCN backend.

Each file is named after the model it checks (``adfnet_*.pt``, ``sadnet_*.pt``).
"""

import contextlib
import sys
from pathlib import Path

import pytest
import torch

import dcn
from adfnet.models import build_model

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from weights import golden_state_dict  # noqa: E402

# The DCN networks; the wavelet networks' files (their own weight rules) are read by test_wavelet.py and
# test_mwrcanet.py.
FILES = sorted(p for p in GOLDEN.glob("*.pt") if p.stem.split("_")[0] in ("adfnet", "sadnet"))


@pytest.fixture(scope="module", params=FILES, ids=lambda p: p.stem)
def golden(request):
    g = torch.load(request.param)
    model = build_model(request.param.stem.split("_")[0], n_colors=g["n_colors"]).eval()
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(golden_state_dict(model.state_dict(), g["seed"]), strict=True)
    return g, model, keys


def test_keys_and_shapes_are_official(golden):
    g, _, keys = golden
    assert keys == [(k, tuple(shape)) for k, shape in g["keys"]]


# The compiled extension at every instruction-set level this CPU supports, the other backends once.
LEVELS = dcn.cpu_capabilities() if "ext" in dcn.available_backends() else []
RUNS = [f"ext-{level}" for level in LEVELS] + [b for b in dcn.available_backends() if b != "ext"]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("dtype, key, tol", [(torch.float32, "output", 1e-5), (torch.float64, "output_float64", 1e-9)])
def test_output_matches_official(golden, run, dtype, key, tol):
    g, model, _ = golden
    backend, _, level = run.partition("-")
    capability = dcn.use_cpu_capability(level) if level else contextlib.nullcontext()
    with dcn.use_backend(backend), capability, torch.no_grad():
        out = model.to(dtype)(g["input"].to(dtype))
    model.float()
    assert out.dtype == dtype
    assert (out - g[key].to(dtype)).abs().max().item() <= tol


@pytest.mark.cuda
def test_output_matches_official_on_cuda(golden):
    """The CUDA kernels in the whole networks (TF32 off: float32 products, as the golden files)."""
    g, model, _ = golden
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with dcn.use_backend("ext"), torch.no_grad():
            out = model.cuda()(g["input"].cuda()).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        model.cpu()
    assert (out - g["output"]).abs().max().item() <= 1e-4
