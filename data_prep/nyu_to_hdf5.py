#!/usr/bin/env python3
"""Crop and normalise an NYU-layout dataset into HDF5 (Make's second step): the same as `hpe prep ROOT OUT.h5`."""
import sys

from hpe.cli import main

if __name__ == "__main__":
    sys.exit(main(["prep", *sys.argv[1:]]))
