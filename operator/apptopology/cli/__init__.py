"""The ``apptopology`` command line (also installed as ``kubectl-apptopology``): one module per command
family, output formats in ``output``, input in ``documents``. ``apptopology.cli:main`` is the entry point."""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
