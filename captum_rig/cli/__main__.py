"""``python -m captum_rig.cli``: the same program as the ``captum-rig`` command."""

import sys

from captum_rig.cli._main import main

if __name__ == "__main__":
    sys.exit(main())
