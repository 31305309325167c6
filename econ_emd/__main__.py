"""`python -m econ_emd`: the same as the `econ-emd` command."""
import sys

from .cli import main

sys.exit(main())
