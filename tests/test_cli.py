"""The command lines: console entry points and the official script names, recipes as configs, and the
user mistakes test.py / train.py must refuse with a clear message (never a traceback, never a lost input)."""

from __future__ import annotations

import argparse
import hashlib
import re
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from adfnet.cli import test as test_cli
from adfnet.data.noise import build_noise
from adfnet.engine.config import TrainConfig
from adfnet.engine.options import CONFIGS, parse_options
from adfnet.engine.options import build_parser as build_train_parser
from adfnet.engine.recipe import staged_run
from adfnet.models import build_model
from conftest import MCMASTER, ROOT, SET12, console_script, subprocess_env

ENTRY_POINTS = {
    "adfnet-train": "adfnet.cli.train",
    "adfnet-test": "adfnet.cli.test",
    "adfnet-real": "adfnet.cli.real",
    "adfnet-patches": "adfnet.cli.patches",
    "adfnet-complexity": "adfnet.cli.complexity",
    "adfnet-denoise": "adfnet.cli.denoise",
    "adfnet-export": "adfnet.cli.export",
    "adfnet-distill": "adfnet.cli.distill",
}


def run(*argv: str | Path, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=subprocess_env(), timeout=timeout
    )


def checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    out = {}
    for name, n_colors in (("gray", 1), ("rgb", 3)):
        out[name] = folder / f"{name}.pt"
        torch.save(build_model("adfnet", n_colors=n_colors).state_dict(), out[name])
    return out


# ---------------------------------------------------------------------------------------------- entry points


def test_pyproject_declares_the_entry_points() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {name: f"{module}:main" for name, module in ENTRY_POINTS.items()}
    assert "test" in project["optional-dependencies"]
    assert not any(dep.startswith(("torch", "torchvision")) for dep in project["dependencies"])


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_console_entry_point_runs(name: str) -> None:
    """The installed script (scripts/setup.sh installs the project editable) answers -h under its own name."""
    done = run(console_script(name), "-h", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {name}"), done.stdout[:200]


def test_adfnet_test_entry_point_evaluates(tmp_path: Path, weights: dict[str, Path]) -> None:
    sets = tmp_path / "Set12"
    sets.mkdir()
    cv2.imwrite(str(sets / "01.png"), cv2.imread(str(SET12 / "01.png"), cv2.IMREAD_UNCHANGED)[:40, :48])
    argv = [
        "--n_colors",
        "1",
        "--weights",
        str(weights["gray"]),
        "--input_dir",
        str(sets),
        "--test_noiseL",
        "25",
        "--chop",
        "--cpu",
        "--dcn_backend",
        "torchvision",
    ]
    by_entry = run(console_script("adfnet-test"), *argv, "--result_dir", tmp_path / "a")
    assert by_entry.returncode == 0, by_entry.stderr
    assert test_cli.main([*argv, "--result_dir", str(tmp_path / "b")]) == 0
    a, b = ((tmp_path / d / "Set12/sigma25/results.csv").read_text().splitlines() for d in ("a", "b"))
    assert a[0] == b[0] == "image,sigma,psnr,ssim,seconds,noise,protocol,noisy_psnr,noisy_ssim"
    assert a[1].split(",")[:4] == b[1].split(",")[:4]  # same scores, whichever way it was started


def run_file(path: Path, *argv: str) -> int:
    """Run a script file as ``python path argv...`` does, in this process (no second torch import)."""
    old = sys.argv
    sys.argv = [str(path), *argv]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as done:
        return 0 if done.code is None else done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = old
    return 0


@pytest.mark.parametrize(
    ("script", "prog"),
    [
        ("scripts/test_sidd_val_mat.py", "adfnet-real sidd-val-mat"),
        ("scripts/test_sidd_val_png.py", "adfnet-real sidd-val-png"),
        ("scripts/test_sidd_benchmark_mat.py", "adfnet-real sidd-benchmark"),
        ("scripts/test_dnd_png.py", "adfnet-real dnd"),
        ("scripts/evaluate_sidd.py", "adfnet-real score-sidd"),
        ("scripts/bundle_submissions.py", "adfnet-real bundle-dnd"),
        ("scripts/generate_patches_SIDD.py", "adfnet-patches"),
        ("train.py", "train.py"),  # the name the user typed (python train.py -h)
        ("test.py", "test.py"),
    ],
)
def test_official_script_names_run_their_tool(script: str, prog: str, capsys) -> None:
    assert run_file(ROOT / script, "-h") == 0
    assert capsys.readouterr().out.startswith(f"usage: {prog}")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command line's parser, the sub-commands of adfnet-real included."""
    from adfnet.cli import complexity, denoise, export, real
    from experiments import fig7

    parsers = {
        "adfnet-train": build_train_parser(),
        "adfnet-test": test_cli.build_parser(),
        "adfnet-denoise": denoise.build_parser(),
        "adfnet-export": export.build_parser(),
        "adfnet-complexity": complexity.build_parser(),
        "fig7": fig7.build_parser(),
    }
    for action in real.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers |= {f"adfnet-real {name}": sub for name, sub in action.choices.items()}
    return parsers


def test_every_flag_has_a_help_text() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _parsers().items()
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert not missing, f"flags without help: {missing}"


def test_help_texts_say_what_the_flags_take() -> None:
    from dcn._backend import TABLE

    def help_of(parser: argparse.ArgumentParser, flag: str) -> str:
        return " ".join(next(a.help for a in parser._actions if flag in a.option_strings).split())

    parsers = _parsers()
    for name, parser in parsers.items():
        if any("--dcn_backend" in a.option_strings for a in parser._actions):
            assert all(backend in help_of(parser, "--dcn_backend") for backend in TABLE), name
        if any("--precision" in a.option_strings for a in parser._actions):
            assert "at least 50 dB PSNR against fp32" in help_of(parser, "--precision"), name
    assert "cuda_emulated" in help_of(parsers["adfnet-test"], "--dcn_backend")
    assert ".safetensors" in help_of(parsers["adfnet-test"], "--weights")
    assert "plain number of GB" in help_of(parsers["adfnet-denoise"], "--max_memory")


def test_official_script_user_mistake_is_a_message(tmp_path: Path, capsys) -> None:
    assert run_file(ROOT / "scripts/bundle_submissions.py", "--mat_dir", str(tmp_path / "none")) == 1
    assert "error:" in capsys.readouterr().err


def test_script_shim_without_the_package_says_how_to_install(tmp_path: Path) -> None:
    """Outside the checkout and without an install, the official script names explain instead of a traceback."""
    copy = tmp_path / "evaluate_sidd.py"
    copy.write_text((ROOT / "scripts/evaluate_sidd.py").read_text())
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(copy), "-h"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )  # -S -I: no site-packages, no PYTHONPATH
    assert_clean_error(done, "pip install --no-build-isolation -e .", "python -m adfnet.cli.real score-sidd")


# ---------------------------------------------------------------------------------------------- recipes

# The paper's training recipes (the official command lines are quoted at the top of each config).
PAPER_RECIPES = {
    **{
        f"gray_n{s}": {
            "n_colors": 1,
            "noiseL": s,
            "model": "adfnet",
            "epochs": 950,
            "lr_decay": 220,
            "n_GPUs": 1,
            "data_train": "DIV2K",
            "task": "synthetic",
        }
        for s in (15, 25, 50)
    },
    **{
        f"rgb_n{s}": {
            "n_colors": 3,
            "noiseL": s,
            "model": "adfnet",
            "epochs": 1000,
            "lr_decay": 200,
            "n_GPUs": 2,
            "data_train": "DIV2K",
            "task": "synthetic",
        }
        for s in (10, 30, 50, 70)
    },
    "adfnet-L_n50": {
        "n_colors": 3,
        "noiseL": 50,
        "model": "adfnet_l",
        "epochs": 1000,
        "lr_decay": 200,
        "n_GPUs": 2,
        "data_train": "MIX",
        "task": "synthetic",
        "test_every": None,
    },
    "sidd": {
        "n_colors": 3,
        "model": "adfnet",
        "epochs": 160,
        "decay_type": "warmup_cosine",
        "warmup_epochs": 3,
        "lr_min": 1e-6,
        "weight_decay": 1e-8,
        "loss": "1*Charbonnier",
        "clamp_output": True,
        "seed": 1234,
        "mixup_after_epoch": 5,
        "val_per_epoch": 3,
        "val_after_epoch": 5,
        "task": "paired",
        "n_GPUs": 2,
        "save": "ADFNet",
    },
    # not a paper recipe (the paper has no raw task): ours, documented in configs/raw.yml
    "raw": {
        "raw": True,
        "n_colors": 4,
        "cfa_pattern": "RGGB",
        "noise": "poisson_gaussian",
        "noise_params": None,
        "model": "adfnet",
        "data_train": "DIV2K",
        "task": "synthetic",
        "patch_size": 256,
        "batch_size": 16,
        "loss": "1*L1",
        "lr": 1e-4,
        "epochs": 1000,
        "lr_decay": 200,
        "gamma": 0.5,
        "test_every": 1000,
    },
}
# SADNet's release (JimmyChame/SADNet option.py defaults, train.py): 200 epochs, Adam 1e-4 x0.5 every 60,
# nn.MSELoss (mean) on noisy inputs clipped to [0, 1]; real noise: nn.L1Loss.
SADNET_COMMON = {
    "model": "sadnet",
    "epochs": 200,
    "lr_decay": 60,
    "gamma": 0.5,
    "n_GPUs": 1,
    "decay_type": "step",
    "optimizer": "ADAM",
    "beta1": 0.9,
    "beta2": 0.999,
    "epsilon": 1e-8,
    "weight_decay": 0.0,
    "patch_size": 128,
    "batch_size": 16,
    "lr": 1e-4,
    "clamp_output": False,
    "mixup_after_epoch": -1,
}
PAPER_RECIPES.update(
    {
        f"sadnet_{name}_n{s}": {
            **SADNET_COMMON,
            "n_colors": n,
            "noiseL": s,
            "loss": "1*L2",
            "clip_noisy": True,
            "task": "synthetic",
            "data_train": "DIV2K",
        }
        for name, n in (("rgb", 3), ("gray", 1))
        for s in (10, 30, 50, 70)
    }
)
PAPER_RECIPES["sadnet_sidd"] = {**SADNET_COMMON, "n_colors": 3, "loss": "1*L1", "task": "paired", "clip_noisy": False}
# DBSN's recipes (XHWXD/DBSN's scripts; the configs' comments say which): the keys every stage shares.
DBSN_COMMON = {"model": "dbsn", "task": "noisy", "patch_size": 96, "batch_size": 8, "optimizer": "ADAM"}
PAPER_RECIPES.update(
    {
        "dbsn_gray_awgn": {**DBSN_COMMON, "n_colors": 1, "noiseL": 25, "noise": None, "test_every": 6260},
        "dbsn_gray_hg": {
            **DBSN_COMMON,
            "n_colors": 1,
            "noise": "hg_dbsn",
            "noise_params": [40, 10],
            "test_every": 6260,
        },
        "dbsn_rgb_awgn": {**DBSN_COMMON, "n_colors": 3, "noiseL": 25, "noise": None},
        "dbsn_rgb_hg": {**DBSN_COMMON, "n_colors": 3, "noise": "hg_dbsn", "noise_params": [40, 10]},
        "dbsn_rgb_mg": {**DBSN_COMMON, "n_colors": 3, "noise": "mg", "noise_params": [75]},
    }
)
# DBSN's distillation (gray_kd_train.sh: batch 32 of 160-px patches, 80 epochs, x0.1 after 40 and 60, real pairs
# carrying 0.1 / 1.1 of the loss; an epoch of DIV2K + WED at batch 32), into any student.
PAPER_RECIPES["distill_dbsn"] = {
    "task": "synthetic",
    "noise": "learned",
    "teacher_share": 0.0909,
    "batch_size": 32,
    "patch_size": 160,
    "epochs": 80,
    "decay_type": "step_40_60",
    "gamma": 0.1,
    "test_every": 173,
}
# Their stages, per recipe: (stage, epochs, milestones, decay rate, iterations per epoch, learning rates of the nets
# the stage trains: D-BSN, sigma_mu, sigma_n), from the notes' table of their .sh files and option defaults.
_GRAY_MU = ("mu", 90, "step_30_60_70_80", 0.1, 6260, {"dbsn": 3e-4})
_RGB_MU = ("mu", 100, "step_20_60_70_80_90", 0.1, 6319, {"dbsn": 3e-4})
_RGB_SIGMA = ("sigma", 50, "step_20_30_40", 0.1, 606, {"sigma_mu": 3e-4, "sigma_n": 3e-4})
DBSN_STAGES = {
    "dbsn_gray_awgn": [
        _GRAY_MU,
        ("all", 100, "step_20_40_60_70_80_90", 0.1, 6260, dict.fromkeys(("dbsn", "sigma_mu", "sigma_n"), 3e-4)),
    ],
    "dbsn_gray_hg": [
        _GRAY_MU,
        ("all", 100, "step_20_40_60_70_80_90", 0.5, 6260, dict.fromkeys(("dbsn", "sigma_mu", "sigma_n"), 3e-4)),
    ],
    **{
        f"dbsn_rgb_{kind}": [
            _RGB_MU,
            _RGB_SIGMA,
            ("all", 100, "step_20_40_60_80", 0.1, 8, dict.fromkeys(("dbsn", "sigma_mu", "sigma_n"), lr)),
        ]
        for kind, lr in (("awgn", 3e-5), ("hg", 3e-5), ("mg", 3e-6))
    },
}
# model_options: the noise type and the sigma nets' width (16 only in gray_train_g.sh)
DBSN_NETS = {
    "dbsn_gray_awgn": ("gaussian", 16),
    "dbsn_gray_hg": ("poisson_gaussian", 32),
    "dbsn_rgb_awgn": ("gaussian", 32),
    "dbsn_rgb_hg": ("poisson_gaussian", 32),
    "dbsn_rgb_mg": ("multivariate_gaussian", 32),
}
SYNTHETIC_COMMON = {
    "patch_size": 128,
    "batch_size": 16,
    "lr": 1e-4,
    "gamma": 0.5,
    "optimizer": "ADAM",
    "loss": "1*MSE",
    "decay_type": "step",
    "weight_decay": 0.0,
    "save_results": True,
    "test_every": 1000,
    "clip_noisy": False,  # ADFNet's noisy training inputs are not clipped
}


def test_every_paper_recipe_has_one_config_and_it_matches_the_paper() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yml")) == sorted(PAPER_RECIPES)
    for recipe, expected in PAPER_RECIPES.items():
        own = recipe.startswith(("sadnet", "dbsn", "distill")) or recipe in ("sidd", "raw")
        want = {**({} if own else SYNTHETIC_COMMON), **expected}
        if recipe == "sidd":
            want.update(patch_size=128, batch_size=16, lr=1e-4, optimizer="ADAM", save_results=True)
        teacher = ["--teacher", "dbsn.pt"] if recipe == "distill_dbsn" else []  # its noise model needs one
        args = vars(parse_options(["--config", str(CONFIGS / f"{recipe}.yml"), *teacher]))
        assert {k: args[k] for k in want} == want, recipe
        keys = yaml.safe_load((CONFIGS / f"{recipe}.yml").read_text())
        assert set(keys) <= set(args), recipe  # keys are option names


def stage_runs(config: TrainConfig) -> list[TrainConfig]:
    """The run of each stage of a staged recipe, as adfnet-train runs them."""
    run = staged_run(config)
    return [run.config(step) for step in run.recipe.steps]


def test_dbsn_recipes_are_the_authors_stages() -> None:
    """Each stage of a DBSN recipe is one of the authors' scripts with its hyperparameters, and its own run."""
    for recipe, stages in DBSN_STAGES.items():
        config = parse_options(["--config", recipe, "--save", "x"])
        noise_type, width = DBSN_NETS[recipe]
        assert config.model_options == {"noise_type": noise_type, "sigma_mu_mid_ch": width, "sigma_n_mid_ch": width}
        runs = stage_runs(config)
        assert [run.save for run in runs] == [f"{k}_{stage[0]}" for k, stage in enumerate(stages, 1)], recipe
        assert [run.pre_train for run in runs] == [
            ".",
            *(f"experiment/x/{r.save}/model/model_latest.pt" for r in runs[:-1]),
        ]
        for run, (stage, epochs, milestones, decay, test_every, rates) in zip(runs, stages, strict=True):
            assert run.dir_experiment == str(Path("experiment") / "x") and not run.stages
            got = (run.dbsn_stage, run.epochs, run.decay_type, run.gamma, run.test_every)
            assert got == (stage, epochs, milestones, decay, test_every), (recipe, stage)
            lrs = {"dbsn": run.lr, "sigma_mu": run.lr_sigma_mu or run.lr, "sigma_n": run.lr_sigma_n or run.lr}
            assert {net: lrs[net] for net in rates} == rates, (recipe, stage)


def test_flags_given_win_over_every_stage_of_a_recipe() -> None:
    runs = stage_runs(parse_options(["--config", "dbsn_rgb_mg", "--epochs", "2", "--lr", "1e-3", "--test_every", "3"]))
    assert [(run.epochs, run.lr, run.test_every) for run in runs] == [(2, 1e-3, 3)] * 3
    assert [run.lr_sigma_n for run in runs] == [None, 3e-4, 3e-6]  # not given: the recipe's
    merged = parse_options(["--config", "dbsn_gray_awgn", "--model_options", "{mid_ch: 8}"]).model_options
    assert merged == {"noise_type": "gaussian", "sigma_mu_mid_ch": 16, "sigma_n_mid_ch": 16, "mid_ch": 8}


def test_config_is_defaults_explicit_flags_win(tmp_path: Path, capsys) -> None:
    args = parse_options(["--epochs", "2", "--config", "gray_n25", "--lr", "5e-4", "--self_ensemble"])
    assert (args.epochs, args.lr, args.noiseL, args.n_colors, args.ensemble) == (2, 5e-4, 25.0, 1, True)
    bad = tmp_path / "bad.yml"
    bad.write_text("n_colours: 1\nlr: 1.0e-4\n")
    for argv, needle in (
        (["--config", str(bad)], "unknown option name(s) n_colours"),
        (["--config", str(tmp_path / "none.yml")], "not found"),
        (["--config", "gray_n25", "--lr", "-1e-3"], "must be > 0"),
    ):
        assert run_file(ROOT / "train.py", *argv) == 2
        captured = capsys.readouterr()
        assert needle in captured.err and "Traceback" not in captured.out + captured.err


def test_a_train_config_is_data_with_the_defaults_and_checks_of_train_py() -> None:
    """What the trainer takes, made without the command line (an experiment, a recipe of another network):
    train.py's defaults, the gray/colour ones filled in, and train.py's checks with their messages."""
    assert vars(TrainConfig(save="x")) == vars(parse_options(["--save", "x"]))
    gray = TrainConfig(model="ADFNet", n_colors=1, no_mfi=True, save="x")
    assert (gray.epochs, gray.lr_decay, gray.val_seed, gray.data_val) == (950, 220, 1, "Set12")
    assert gray.spec.record() == {"model": "adfnet", "n_colors": 1, "placement": "decoder", "dcb": True, "mdcb": True,
                                  "mfi": False}  # fmt: skip
    assert gray.noise_model == build_noise("awgn", (50,))
    for options, message in (
        ({"patch_size": 20}, "--patch_size 20 must be a multiple of 8"),
        ({"lr": 0.0}, "--lr must be a positive number"),
        ({"noise_params": [3.0]}, "--noise_params needs --noise NAME"),
        ({"noise": "awgn", "noise_params": [15.0, 25.0]}, "trains on one sigma"),
        ({"model": "unet"}, "unknown model 'unet'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            TrainConfig(save="x", **options)


def test_train_gets_the_shared_runtime_flags() -> None:
    args = parse_options(["--device", "cpu", "--dcn_backend", "reference"])
    assert (args.device, args.dcn_backend, args.cpu) == ("cpu", "reference", False)
    assert parse_options(["--resume", "-1"]).resume == -1  # a negative integer still parses as a value


# ---------------------------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--test_noiseL", "inf", "must be a finite number"),
        ("--test_noiseL", "nan", "must be a finite number"),
        ("--test_noiseL", "-5", "must be >= 0"),
        ("--test_noiseL", "-1e-3", "must be >= 0"),
        ("--test_noiseL", "abc", "expected a number"),
    ],
)
def test_bad_noise_levels_are_refused_by_the_parser(flag: str, value: str, needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        test_cli.parse_args(["--weights", "w.pt", flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --test_noiseL" in err and needle in err


@pytest.mark.parametrize(
    ("value", "needle"), [("-1e-3", "must be > 0"), ("0", "must be > 0"), ("inf", "finite"), ("-.5", "must be > 0")]
)
def test_negative_learning_rates_parse_and_are_refused(value: str, needle: str, capsys) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--lr", value])
    err = capsys.readouterr().err
    assert "argument --lr" in err and needle in err and "expected one argument" not in err
    assert parse_options(["--lr", "1e-3"]).lr == 1e-3


def test_outputs_that_would_land_on_inputs_are_refused(tmp_path: Path, weights: dict[str, Path], capsys) -> None:
    """Outputs that would land inside the input set:
    --input_dir R/sigma25/sigma25 --result_dir R --test_noiseL 25 50 --save_images."""
    root = tmp_path / "R"
    inputs = root / "sigma25" / "sigma25"
    inputs.mkdir(parents=True)
    cv2.imwrite(str(inputs / "a.png"), cv2.imread(str(MCMASTER / "1.tif"))[:40, :48])
    cv2.imwrite(str(inputs / "b.png"), cv2.imread(str(MCMASTER / "2.tif"))[:40, :48])
    before = checksums(inputs)
    for result_dir, sigmas in ((root, ["25", "50"]), (inputs, ["25"]), (inputs / "out", ["50"])):
        code = test_cli.main(
            [
                "--weights",
                str(weights["rgb"]),
                "--input_dir",
                str(inputs),
                "--result_dir",
                str(result_dir),
                "--test_noiseL",
                *sigmas,
                "--save_images",
                "--cpu",
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and "inside the input set" in err and "outside every --input_dir" in err, err
    assert checksums(inputs) == before
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "sigma25",
        "sigma25/sigma25",
        "sigma25/sigma25/a.png",
        "sigma25/sigma25/b.png",
    ]  # nothing written


def test_non_finite_tiff_is_named_and_the_rest_still_scored(tmp_path: Path, weights: dict[str, Path], capsys) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = cv2.imread(str(SET12 / "01.png"), cv2.IMREAD_UNCHANGED)[:40, :48]
    cv2.imwrite(str(folder / "a.png"), gray)
    bad = np.full((40, 48), 0.5, np.float32)
    bad[5, 5] = np.nan
    cv2.imwrite(str(folder / "b_nan.tif"), bad)
    colour = cv2.imread(str(MCMASTER / "1.tif"))[:40, :48]
    cv2.imwrite(str(folder / "c_colour.png"), colour)
    code = test_cli.main(
        [
            "--n_colors",
            "1",
            "--weights",
            str(weights["gray"]),
            "--input_dir",
            str(folder),
            "--test_noiseL",
            "25",
            "--result_dir",
            str(tmp_path / "res"),
            "--cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "1 failure(s)" in err
    assert "b_nan.tif" in out and "NaN or infinite" in out
    assert "c_colour.png: colour image given to a gray model" in out  # converted, and said so
    rows = (tmp_path / "res/mixed/sigma25/results.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["a.png", "c_colour.png"]


@pytest.mark.parametrize("kind", ["file", "under_a_file", "unwritable"])
def test_bad_result_dir_is_refused_before_the_model_loads(tmp_path: Path, kind: str, capsys) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    result_dir = {"file": blocker, "under_a_file": blocker / "sub", "unwritable": Path("/proc/adfnet-results")}[kind]
    code = test_cli.main(
        [
            "--weights",
            str(tmp_path / "missing_{sigma}.pt"),
            "--input_dir",
            str(MCMASTER),
            "--result_dir",
            str(result_dir),
            "--cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and f"--result_dir {result_dir}" in err
    assert ("is a file" if kind == "file" else "cannot be written") in err
    assert "checkpoint" not in out + err  # refused before any checkpoint was looked at
    assert blocker.read_text() == "x"


# ---------------------------------------------------------------------------------------------- installation


def test_setup_without_torch_says_to_disable_build_isolation() -> None:
    """What `pip install .` shows when its isolated build environment has no torch."""
    code = "import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--name']; exec(open('setup.py').read())"
    done = run(sys.executable, "-c", code, timeout=60)
    assert_clean_error(done, "pip install --no-build-isolation -e .", "sh make.sh")


def test_make_sh_prefers_the_project_venv(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    (copy / ".venv/bin").mkdir(parents=True)
    (copy / "make.sh").write_text((ROOT / "make.sh").read_text())
    log = tmp_path / "log"
    fake = copy / ".venv/bin/python"
    fake.write_text(f'#!/bin/sh\necho "$0 $*" >> "{log}"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in subprocess_env().items() if k != "PYTHON"}
    done = subprocess.run(["sh", str(copy / "make.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls and all(c.startswith(".venv/bin/python") for c in calls), calls
    assert any("setup.py build_ext --inplace" in c for c in calls)
