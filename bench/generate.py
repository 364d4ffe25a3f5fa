"""Command `python -m bench.generate`; the code lives in bench.data.generate."""
import sys

from bench.data.generate import main

if __name__ == "__main__":
    sys.exit(main())
