#!/usr/bin/env python3
"""Write the synthetic NYU-format dataset (Make's first step): the same as `hpe synth ROOT [options]`."""
import sys

from hpe.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
