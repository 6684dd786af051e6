"""`python -m defectgen` (also what `torchrun -m defectgen train ...` runs)."""

import sys

from defectgen.cli import main

sys.exit(main())
