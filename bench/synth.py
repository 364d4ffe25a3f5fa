"""Command `python -m bench.synth`; the code lives in bench.data.synth."""
import sys

from bench.data.synth import main

if __name__ == "__main__":
    sys.exit(main())
