"""Where a command may write: never onto, nor into, what it reads (the one home of that check).

A result folder inside an input set (or an input set inside the result folder, under a name the
command writes to) lets saved outputs replace inputs, and a later pass then scores against its own
outputs. Every command that writes checks its planned outputs here, once, before any work:
:func:`check_outputs_apart` for outputs in folders of their own (test.py, the real-noise tools),
:func:`check_not_input_folder` for outputs written beside one another under the inputs' names
(adfnet-denoise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from adfnet.errors import UserError


def check_outputs_apart(
    outputs: Mapping[str, str | Path],
    inputs: Sequence[str | Path],
    result_flag: str = "--result_dir",
    input_flag: str = "--input_dir",
) -> None:
    """Raise ``ValueError`` if an output (file or folder) is an input or lies inside an input folder.

    ``outputs`` maps a description (``"the denoised PNGs"``) to the path it is written to; ``inputs``
    are the folders and files read. Paths are compared after resolving symlinks; an output folder
    that merely contains an input folder under another name is fine (nothing lands on the input).
    """
    resolved = [Path(p).resolve() for p in inputs]
    for what, path in outputs.items():
        out = Path(path).resolve()
        for source in resolved:
            if out == source or source in out.parents:
                where = "onto the input file" if out == source and source.is_file() else "inside the input set"
                raise ValueError(
                    f"{result_flag} would write {what} to {out}, {where} {source}: outputs could overwrite inputs. "
                    f"Choose a {result_flag} outside every {input_flag}"
                )


def check_not_input_folder(out_dir: str | Path, inputs: Sequence[str | Path], flag: str = "--out") -> None:
    """Raise :class:`~adfnet.errors.UserError` if ``out_dir`` directly holds one of the ``inputs`` (files):
    outputs named after their inputs would overwrite them, or mix with them and be read as inputs next time."""
    out = Path(out_dir).resolve()
    for src in inputs:
        if Path(src).resolve().parent == out:
            raise UserError(
                f"{flag} {out_dir} is the folder of input {src}: choose another folder (inputs are never overwritten)"
            )
