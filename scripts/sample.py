"""``python -m scripts.sample`` (``scripts/make-sample``): the shipped sample data.

The generator lives in the package (:mod:`tradepipe.replay.sample`) so that ``tradepipe replay
--symbols N`` can use it installed; this is its command-line entry in the source tree.
"""

from __future__ import annotations

import sys

from tradepipe.replay.sample import (
    DEFAULT_MINUTES,
    DEFAULT_SEED,
    MODELS,
    SymbolModel,
    generate,
    gzip_lines,
    main,
    sample_path,
)

__all__ = [
    "DEFAULT_MINUTES",
    "DEFAULT_SEED",
    "MODELS",
    "SymbolModel",
    "generate",
    "gzip_lines",
    "main",
    "sample_path",
]

if __name__ == "__main__":
    sys.exit(main())
