"""``python -m noaber.cli``: the ``noaber`` command."""

import sys

from noaber.cli import main

main(sys.argv[1:])
