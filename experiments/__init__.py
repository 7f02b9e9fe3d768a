"""Experiments over the package, not part of it: the Fig. 7 plug-in experiment (``python -m experiments.fig7``,
``scripts/fig7.sh``) and the harness validation report (``python -m experiments.harness``,
``scripts/validate_harness.sh``). Their prose is in Markdown templates beside them; nothing in ``adfnet``
imports them. Run them from the repository root."""
