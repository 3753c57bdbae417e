"""The package's version, read by ``__init__``, the command line, the dumps and the build (setuptools)."""

__version__ = "0.2.0"
