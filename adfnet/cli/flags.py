"""The flags that say what runs on what, defined once for every command line that has them: the network
(``--model`` and the Table 4 ablation flags: train.py, test.py, ``adfnet-complexity``, the real-noise tools)
and the synthetic noise (train.py and test.py), and what they select (:class:`~adfnet.models.ModelSpec`; the
noise models: :func:`adfnet.data.noise.noise_from_flags`)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from adfnet.checkpoint import infer_model
from adfnet.cli.common import add_runtime_arguments, finite_float
from adfnet.data.noise import NOISE_NAMES
from adfnet.models import PLACEMENTS, ModelSpec, canonical_name, family
from adfnet.models.spec import ablation_options, in_raw_layout


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
        help="adfnet, adfnet_l (the paper's ADFNet*), sadnet, dncnn, rdn, dbsn, mwrcanet, mwresnet or mwcnn"
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


def checkpoint_model_spec(args: argparse.Namespace, state: Mapping[str, object], n_colors: int) -> ModelSpec:
    """The network to build for a loaded checkpoint ``state`` in ``n_colors``: ADFNet's options are its flags (the
    Table 4 ablations, checked against the record when loading); any other ``--model``'s are the checkpoint's own
    (its architecture record, else its shapes: :func:`adfnet.checkpoint.infer_model`), which must be of that
    model. MWRCANet's two raw layouts take each other's weights; otherwise the caller compares ``n_colors``."""
    if family(args.model) == "adfnet":
        return model_spec(args, n_colors)
    return in_raw_layout(infer_model(state, args.model), n_colors)


def add_real_model_arguments(parser: argparse.ArgumentParser) -> None:
    """What every denoising tool shares: model, weights, chop, ensemble, and the runtime flags."""
    group = parser.add_argument_group("model")
    add_model_arguments(group)
    group.add_argument(
        "--weights", default="checkpoints/adfnet_real.pth", help="checkpoint (.pth/.pt, official or ours)"
    )
    group.add_argument("--ensemble", "--self_ensemble", dest="ensemble", action="store_true", help="x8 self-ensemble")
    group.add_argument(
        "--chop",
        action="store_true",
        help="4-quadrant chop (the official real scripts chopped whenever --ensemble was given)",
    )
    add_runtime_arguments(parser)


def add_noise_arguments(group: argparse._ActionsContainer, sigma_flag: str, default: str) -> None:
    """``--noise NAME`` and ``--noise_params`` beside the command's AWGN level ``sigma_flag`` (``--noiseL``,
    ``--test_noiseL``); ``default`` says what runs without ``--noise``. What they mean and the checks of their
    combination are :func:`adfnet.data.noise.noise_from_flags`'s."""
    group.add_argument(
        "--noise",
        type=str.lower,
        choices=NOISE_NAMES,
        default=None,
        help=f"synthetic noise model (default: {default}); awgn with --noise_params SIGMA equals {sigma_flag} "
        "SIGMA; parameters on the 0-255 scale in --noise_params (docs/EVALUATION.md, docs/TRAINING.md)",
    )
    group.add_argument(
        "--noise_params",
        nargs="+",
        type=finite_float(0),
        default=None,
        help="parameters of --noise, e.g. --noise hg --noise_params 40 10 (mg: L, default 75)",
    )
