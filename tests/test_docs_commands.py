"""The commands of the README and the docs work as written, in a fresh shell, after the README's set-up.

A new user copies commands into a shell that has not activated anything. So every command of a
```bash block in README.md, docs/*.md and the folders' READMEs is checked as such a user would meet it,
in a clean environment (only PATH without the environment's bin/, HOME, and PYTHONPATH naming this
checkout, which is what the editable install of a fresh clone points at), from the repository root:

* the convention: Python programs are written with the environment's bin/ (``.venv/bin/python ...``,
  ``.venv/bin/adfnet-test ...``), never bare (``python``, ``adfnet-test``: "command not found", or the
  system Python without torch);
* every such program answers ``--help`` with exit code 0, and ours name themselves as they were typed;
* every ``bash``/``sh`` script named exists and parses;
* the cheap complete examples run for real: those that use the demo's weights, with a small checkpoint
  of the same architecture standing in for them, in a copy of the checkout (symlinks) so that their
  outputs land there.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from adfnet.checkpoint import weights_with_architecture
from adfnet.models import build_model
from conftest import ROOT

DOCS = sorted({ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")})
ENV_BIN = ".venv/bin/"
BARE = {"python", "python3", "pip", "pip3", "pytest", "torchrun"}  # plus every adfnet-* console script
DEMO_WEIGHTS = "experiment/demo_gray_n25/model/model_best.pt"  # what scripts/demo.sh writes
OUTPUT_FLAGS = ("--out", "--result_dir")
_BLOCK = re.compile(r"^[ \t]*```bash\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)  # also inside list items
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")  # sidd-raw-val, add: not a path, not a file


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every command in the docs' bash blocks (continuation lines joined, comments
    dropped, ``&&`` / ``;`` chains split, leading ``VAR=value`` assignments removed)."""
    found = []
    for doc in DOCS:
        for block in _BLOCK.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split, lexer.commenters = True, "#"
                argv: list[str] = []
                for token in [*lexer, ";"]:
                    if token in ("&&", ";", "||", "|"):
                        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                            argv.pop(0)
                        if argv:
                            found.append((f"{doc.relative_to(ROOT)}: {line.strip()[:80]}", argv))
                        argv = []
                    else:
                        argv.append(token)
    return found


def bare_program(argv: list[str]) -> str | None:
    """The Python program written without the environment's bin/, if any (``python3 -m venv``, which
    creates the environment, is the one command that must run outside it)."""
    name = argv[0]
    if argv[:3] == ["python3", "-m", "venv"]:
        return None
    return name if name in BARE or name.startswith("adfnet-") else None


def help_call(argv: list[str]) -> tuple[list[str], str | None]:
    """``(the --help command, the name its usage line must show)`` for a command of the environment;
    the name is None for programs that are not ours (pytest, torchrun)."""
    program = argv[0][len(ENV_BIN) :]
    if program != "python":
        words = [a for a in argv[1:] if not a.startswith("-")][:1] if program == "adfnet-real" else []
        name = " ".join([program, *words]) if program.startswith("adfnet-") else None
        return [argv[0], *words, "--help"], name
    if argv[1] == "-m":
        module = argv[2]
        words = [a for a in argv[3:] if not a.startswith("-")][:1] if module.startswith("adfnet") else []
        words = [w for w in words if _SUBCOMMAND.match(w)]  # a sub-command (add, verify), not a path
        return [*argv[:3], *words, "--help"], f"python -m {module}" if module.startswith("adfnet") else None
    return [argv[0], argv[1], "--help"], Path(argv[1]).name  # a script of the repository


def clean_env(home: Path) -> dict[str, str]:
    """A fresh login's environment: system PATH (not the environment's bin/), HOME; PYTHONPATH = this
    checkout (the editable install of a fresh clone points at it; here the shared environment's may not)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }


def run(argv: list[str], cwd: Path, home: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=clean_env(home), capture_output=True, text=True, timeout=timeout)


COMMANDS = documented_commands()
OURS = [(where, argv) for where, argv in COMMANDS if argv[0].startswith(ENV_BIN)]


def test_the_docs_hold_commands_of_every_kind() -> None:
    """The extraction finds what the checks below need (a parser that found nothing would pass them all)."""
    assert len(COMMANDS) > 20
    assert any(argv[0] == f"{ENV_BIN}python" and argv[1] == "test.py" for _, argv in OURS)
    assert any(DEMO_WEIGHTS in argv for _, argv in OURS)
    assert any(argv[0] == "bash" for _, argv in COMMANDS)


def test_every_documented_command_uses_the_environment_programs() -> None:
    wrong = [f"{where}  ({bare})" for where, argv in COMMANDS if (bare := bare_program(argv))]
    assert not wrong, "write these with .venv/bin/ (they fail in a fresh shell):\n" + "\n".join(wrong)


def inline_commands() -> Iterator[tuple[str, str]]:
    """Commands quoted in the text (`` `python test.py ...` ``, `` `adfnet-test --plot` ``): a word with
    arguments (a flag, a path, a file); not names (`` `adfnet-test` ``, `` `adfnet-real sidd-val-mat` ``)."""
    for doc in DOCS:
        text = _BLOCK.sub("", doc.read_text())
        for span in _INLINE.findall(text):
            if any(w.startswith("-") or any(c in w for c in "/.=") for w in span.split()[1:]):
                yield f"{doc.relative_to(ROOT)}: {span}", span


def test_commands_quoted_in_the_text_use_the_environment_programs() -> None:
    wrong = [where for where, span in inline_commands() if bare_program(span.split())]
    assert not wrong, "write these with .venv/bin/:\n" + "\n".join(wrong)


def test_documented_scripts_exist_and_parse() -> None:
    scripts = {argv[1] for _, argv in COMMANDS if argv[0] in ("bash", "sh") and len(argv) > 1}
    assert scripts
    for script in sorted(scripts):
        assert (ROOT / script).is_file(), script
        assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0, f"{script} does not parse"


def help_calls() -> dict[tuple[str, ...], tuple[str | None, str]]:
    """One ``--help`` call per documented program (in blocks and quoted in the text), where it was found."""
    quoted = [(where, shlex.split(span)) for where, span in inline_commands() if span.startswith(ENV_BIN)]
    calls: dict[tuple[str, ...], tuple[str | None, str]] = {}
    for where, argv in OURS + quoted:
        if argv[:2] == [f"{ENV_BIN}python", "-c"] or any("<" in a for a in argv[:3]):
            continue  # an inline program, or a placeholder (python -m adfnet.cli.<name>): nothing to ask
        command, name = help_call(argv)
        calls.setdefault(tuple(command), (name, where))
    return calls


@pytest.mark.parametrize("command", sorted(help_calls()), ids=" ".join)
def test_documented_program_answers_help_in_a_fresh_shell(command: tuple[str, ...], tmp_path: Path) -> None:
    name, where = help_calls()[command]
    assert (ROOT / command[0]).exists(), f"{where}: {command[0]} does not exist; run bash scripts/setup.sh"
    done = run(list(command), ROOT, tmp_path)
    assert done.returncode == 0, f"{where}\n{done.stderr[-2000:]}"
    if name is not None:
        assert f"usage: {name}" in done.stdout, f"{where}: the usage line should name {name!r}:\n{done.stdout[:300]}"


@pytest.fixture(scope="module")
def checkout_after_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout (symlinks) in which the demo has run: its weights path holds a gray ADFNet
    with the architecture record, as the trainer writes it (random weights: the commands are checked,
    not the quality)."""
    copy = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name not in ("experiment", "results", "denoised"):
            (copy / entry.name).symlink_to(entry)
    torch.manual_seed(0)
    weights = copy / DEMO_WEIGHTS
    weights.parent.mkdir(parents=True)
    torch.save(weights_with_architecture(build_model("adfnet", n_colors=1)), weights)
    return copy


@pytest.mark.parametrize(
    "argv", [argv for _, argv in OURS if DEMO_WEIGHTS in argv], ids=lambda argv: " ".join(argv[:3])
)
def test_documented_example_with_the_demo_weights_runs(argv: list[str], checkout_after_demo: Path) -> None:
    outputs = [checkout_after_demo / argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS]
    done = run(argv, checkout_after_demo, checkout_after_demo, timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in text, f"{shlex.join(argv)}\n{text[-3000:]}"
    for out in outputs:
        assert out.is_dir() and any(p.is_file() for p in out.rglob("*")), f"{out} holds no output"


def test_images_the_docs_show_are_committed_and_small() -> None:
    shown = [(doc, target) for doc in DOCS for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", doc.read_text())]
    assert any(doc.name == "README.md" and doc.parent == ROOT for doc, _ in shown), "the README shows no picture"
    for doc, target in shown:
        path = (doc.parent / target).resolve()
        assert path.is_file(), f"{doc.relative_to(ROOT)} shows {target}, which does not exist"
        assert path.stat().st_size < 300_000, f"{target} is {path.stat().st_size} bytes: keep pictures small"
