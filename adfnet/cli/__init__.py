"""The command lines: ``adfnet-train``, ``adfnet-test``, ``adfnet-real``, ``adfnet-patches``, ``adfnet-complexity``.

Each module has ``main(argv=None) -> int`` (the exit code) and is also reachable with ``python -m``;
``train.py``, ``test.py`` and ``scripts/*.py`` are shims over them for the official command lines.
"""
