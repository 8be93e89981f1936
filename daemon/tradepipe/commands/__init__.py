"""One module per ``tradepipe`` sub-command (see :mod:`tradepipe.cli`)."""
