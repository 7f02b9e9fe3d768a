"""SHA-256 manifest of checkpoints: know that a weight file is the one that was recorded.

``checkpoints/SHA256SUMS`` uses the ``sha256sum`` format (``<64 hex digits>  <file name>``, ``#``
comments), so ``cd checkpoints && sha256sum -c SHA256SUMS`` checks it too. Files are matched by name.

    .venv/bin/python -m adfnet.manifest verify checkpoints/adfnet_rgb_n50.pt     # exit 1 on a mismatch
    .venv/bin/python -m adfnet.manifest add checkpoints/adfnet_rgb_n50.pt        # record a file you trust
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from adfnet.fileio import write_text

MANIFEST = Path(__file__).resolve().parents[1] / "checkpoints" / "SHA256SUMS"
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(manifest: str | Path = MANIFEST) -> dict[str, str]:
    """``{file name: hex digest}``; a missing manifest is empty, a malformed line is an error."""
    manifest = Path(manifest)
    if not manifest.is_file():
        return {}
    entries = {}
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise ValueError(f"{manifest}:{number}: expected '<64 hex digits>  <file name>', got {line!r}")
        entries[Path(match.group(2)).name] = match.group(1).lower()
    return entries


def verify(path: str | Path, manifest: str | Path = MANIFEST, required: bool = True) -> bool:
    """Check ``path`` against its manifest entry; True if it matched, False if unlisted and not ``required``.

    Raises ``ValueError`` on a mismatch (a corrupt, truncated or substituted file) or, when ``required``,
    when the file is not listed.
    """
    path = Path(path)
    expected = read_manifest(manifest).get(path.name)
    if expected is None:
        if required:
            raise ValueError(f"{path.name} is not listed in {manifest}: record it with `python -m adfnet.manifest add`")
        return False
    actual = sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path} does not match {manifest}: SHA-256 {actual}, expected {expected}. The file is corrupt, "
            "truncated or another checkpoint with the same name: download it again"
        )
    return True


def add(path: str | Path, manifest: str | Path = MANIFEST) -> str:
    """Record (or update) ``path``'s digest under its file name."""
    path, manifest = Path(path), Path(manifest)
    entries = read_manifest(manifest)
    entries[path.name] = sha256(path)
    header = [
        line for line in (manifest.read_text().splitlines() if manifest.is_file() else []) if line.startswith("#")
    ]
    body = [f"{digest}  {name}" for name, digest in sorted(entries.items())]
    write_text(manifest, "\n".join(header + body) + "\n")
    return entries[path.name]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adfnet.manifest", description="Verify or record checkpoint SHA-256s.")
    p.add_argument("action", choices=("verify", "add"), help="verify files against the manifest, or record them")
    p.add_argument("files", nargs="+", type=Path, help="weight files (matched by name)")
    p.add_argument("--manifest", type=Path, default=MANIFEST, help="the manifest (default checkpoints/SHA256SUMS)")
    args = p.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            if not path.is_file():
                raise ValueError(f"{path} does not exist")
            if args.action == "add":
                print(f"{add(path, args.manifest)}  {path.name}")
            else:
                verify(path, args.manifest)
                print(f"{path}: OK")
        except ValueError as err:
            print(f"{path}: FAILED: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
