"""``python -m edanet.cli``: the ``edanet`` command (as torchrun runs it)."""
import sys

from . import main

sys.exit(main())
