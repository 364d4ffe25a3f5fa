"""Command `python -m bench.importers`; the code lives in bench.data.importers."""
import sys

from bench.data.importers.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
