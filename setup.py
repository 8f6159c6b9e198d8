"""Kept for the design card and older tools; the project is described in pyproject.toml."""
from setuptools import setup

setup()
