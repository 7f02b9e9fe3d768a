# Sourced by the task scripts: the repository root, the interpreter, and dataset checks.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# PYTHON: the interpreter; default the project's .venv (scripts/setup.sh), else python on PATH.
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi

# require_dir DIR FLAG HINT [ARGS...]: unless FLAG is among ARGS (the user points elsewhere), stop with
# a message saying what to download and where when DIR does not exist.
require_dir() {
    local dir=$1 flag=$2 hint=$3
    shift 3
    if [[ " $* " != *" $flag"* && ! -d "$dir" ]]; then
        echo "error: $dir not found. $hint" >&2
        echo "See datasets/README.md, or pass $flag <folder>." >&2
        exit 1
    fi
}
