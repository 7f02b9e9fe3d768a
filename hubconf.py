"""torch.hub entry points: ``torch.hub.load(path_or_repo, "adfnet", weights=...)``.

    model = torch.hub.load("path/to/ADFNet", "adfnet", source="local",
                           weights="experiment/demo_gray_n25/model/model_best.pt")  # bash scripts/demo.sh
    model = torch.hub.load("path/to/ADFNet", "adfnet", source="local", n_colors=1)   # untrained gray network

A weight file listed in ``checkpoints/SHA256SUMS`` is verified before loading; the model name and the
number of colours are read from the checkpoint. The DCN runs on the compiled extension when it is built
(``sh make.sh``), otherwise on torchvision (with one warning). Inputs: float (N, C, H, W) in [0, 1];
``adfnet.inference.denoise`` pads to a multiple of 8 and crops back.
"""

dependencies = ["torch", "torchvision"]


def adfnet(weights=None, n_colors=None, model=None, device="cpu", check_hash=True, manifest=None):
    """ADFNet (AAAI 2023) in eval mode; ``weights`` is a path (``.pt``, ``.pth``, ``.safetensors``) or None.

    ``model`` (``"adfnet"`` or ``"adfnet_l"``) and ``n_colors`` default to what the checkpoint holds
    (``"adfnet"`` and 3 without weights). ``check_hash`` verifies a file listed in the manifest (``manifest``,
    default ``checkpoints/SHA256SUMS``) and refuses it on a mismatch.
    """
    import os

    from adfnet import build_model
    from adfnet.checkpoint import WEIGHTS_HINT, load_checkpoint
    from adfnet.manifest import MANIFEST, verify

    if weights is None:
        return build_model(model or "adfnet", n_colors or 3).eval().to(device)
    if not os.path.exists(weights):
        raise FileNotFoundError(
            f"weights={weights!r} does not exist (a path relative to the current folder, "
            f"{os.getcwd()}); {WEIGHTS_HINT}; or pass weights=None for an untrained network"
        )
    if check_hash:
        verify(weights, manifest or MANIFEST, required=False)
    net, _ = load_checkpoint(weights, name=model, n_colors=n_colors, device=device)
    return net


def adfnet_l(weights=None, n_colors=None, device="cpu", check_hash=True, manifest=None):
    """ADFNet-L (the paper's ADFNet*, widths 64..512); see :func:`adfnet`."""
    return adfnet(weights, n_colors, "adfnet_l", device, check_hash, manifest)
