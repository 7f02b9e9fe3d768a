"""The flags that say which network runs: ``--model`` and the Table 4 ablation flags, shared by train.py, test.py,
``adfnet-complexity`` and the real-noise tools, and what they select (:class:`~adfnet.models.ModelSpec`)."""

from __future__ import annotations

import argparse

from adfnet.models import PLACEMENTS, ModelSpec, canonical_name
from adfnet.models.spec import ablation_options


def add_model_arguments(parser: argparse.ArgumentParser, baselines: tuple[str, ...] = ()) -> None:
    """``--model``, ``--placement``, ``--no_dcb``, ``--no_mdcb``, ``--no_mfi``.

    ``baselines`` are further ``--model`` names that are not networks (test.py's classical methods).
    """

    def model_arg(text: str) -> str:
        if text.strip().lower() in baselines:
            return text.strip().lower()
        try:
            return canonical_name(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err}{''.join(f', {b}' for b in baselines)}") from None

    parser.add_argument(
        "--model",
        default="adfnet",
        type=model_arg,
        help="adfnet, adfnet_l (the paper's ADFNet*), sadnet, dncnn or rdn"
        + "".join(f", {name}" for name in baselines)
        + "; case and '-' do not matter",
    )
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="decoder",
        help="ablation: where DCB + MDCB go (decoder = ADFNet; encoder; everywhere)",
    )
    parser.add_argument("--no_dcb", action="store_true", help="ablation 'without DCB': a CB in its place")
    parser.add_argument("--no_mdcb", action="store_true", help="ablation 'without MDCB': an MCB in its place")
    parser.add_argument("--no_mfi", action="store_true", help="ablation 'without MFI': concatenate, then fuse")


def model_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``build_model`` options the :func:`add_model_arguments` flags select: ADFNet's four ablations; none
    for another ``--model``, where an ablation flag is refused (``ValueError``)."""
    return ablation_options(args.model, args.placement, args.no_dcb, args.no_mdcb, args.no_mfi)


def model_spec(args: argparse.Namespace, n_colors: int) -> ModelSpec:
    """The network the flags ask for, with ``n_colors`` colours (the tool's, or its ``--n_colors``)."""
    return ModelSpec(args.model, n_colors, model_options(args))
