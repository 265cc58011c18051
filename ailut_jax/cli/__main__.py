"""``python -m ailut_jax.cli ...``: the ``ailut`` command without its console script."""

import sys

from ailut_jax.cli import main

sys.exit(main())
