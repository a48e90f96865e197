"""`python -m simlabel_client …`: the same as the `simlabel` command."""

import sys

from simlabel_client.cli import main

sys.exit(main())
