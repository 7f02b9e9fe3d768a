"""hubconf.py (torch.hub, source="local") and the SHA-256 manifest of checkpoints."""

import subprocess

import pytest
import torch

from adfnet import build_model
from adfnet.manifest import add, main, read_manifest, sha256, verify
from conftest import ROOT


def test_hub_loads_a_local_checkpoint_strictly(tmp_path):
    reference = build_model("adfnet", 1)
    ckpt = tmp_path / "adfnet_gray_n25.pt"
    torch.save(reference.state_dict(), ckpt)
    model = torch.hub.load(str(ROOT), "adfnet", source="local", weights=str(ckpt))
    assert not model.training and model.head.weight.shape == (32, 1, 3, 3)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    untrained = torch.hub.load(str(ROOT), "adfnet_l", source="local")
    assert untrained.head.weight.shape == (64, 3, 3, 3)
    with pytest.raises(ValueError, match="n_colors=1"):  # a gray checkpoint forced into an RGB model
        torch.hub.load(str(ROOT), "adfnet", source="local", weights=str(ckpt), n_colors=3)


def test_hub_refuses_a_tampered_listed_checkpoint(tmp_path):
    ckpt, manifest = tmp_path / "adfnet_rgb_n50.pt", tmp_path / "SHA256SUMS"
    torch.save(build_model("adfnet", 3).state_dict(), ckpt)
    add(ckpt, manifest)
    assert torch.hub.load(str(ROOT), "adfnet", source="local", weights=str(ckpt), manifest=str(manifest)) is not None
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 1
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        torch.hub.load(str(ROOT), "adfnet", source="local", weights=str(ckpt), manifest=str(manifest))


def test_manifest_good_and_tampered_files(tmp_path, capsys):
    good = tmp_path / "w.pt"
    good.write_bytes(b"weights" * 1000)
    manifest = tmp_path / "SHA256SUMS"
    manifest.write_text("# comment\n")
    digest = add(good, manifest)
    assert digest == sha256(good) == subprocess.run(["sha256sum", good], capture_output=True, text=True).stdout[:64]
    assert manifest.read_text() == f"# comment\n{digest}  w.pt\n"
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode == 0
    assert read_manifest(manifest) == {"w.pt": digest}
    assert verify(good, manifest)
    good.write_bytes(b"weights" * 999 + b"weighTs")
    with pytest.raises(ValueError, match=f"expected {digest}"):
        verify(good, manifest)
    assert main(["verify", str(good), "--manifest", str(manifest)]) == 1
    assert "FAILED" in capsys.readouterr().err
    other = tmp_path / "unlisted.pt"
    other.write_bytes(b"x")
    assert verify(other, manifest, required=False) is False
    with pytest.raises(ValueError, match="not listed"):
        verify(other, manifest)
    manifest.write_text("nonsense line\n")
    with pytest.raises(ValueError, match="SHA256SUMS:1"):
        read_manifest(manifest)


def test_repository_manifest_is_well_formed():
    # every listed file that is present must match (none is shipped; downloads are listed as recorded)
    for name in read_manifest(ROOT / "checkpoints" / "SHA256SUMS"):
        path = ROOT / "checkpoints" / name
        if path.is_file():
            assert verify(path)


def test_readme_hub_example_names_the_file_the_demo_writes():
    """A new user has no downloaded weights: the README's torch.hub line names what scripts/demo.sh trains."""
    import re

    readme = " ".join((ROOT / "README.md").read_text().split())
    (weights,) = re.findall(r'torch\.hub\.load\("\.", "adfnet", source="local", weights="([^"]+)"\)', readme)
    run = re.search(r"^RUN=\$\{RUN:-(\w+)\}", (ROOT / "scripts/demo.sh").read_text(), re.M).group(1)
    assert weights == f"experiment/{run}/model/model_best.pt"
    assert '"experiment/$RUN/model/model_best.pt"' in (ROOT / "scripts/demo.sh").read_text()
