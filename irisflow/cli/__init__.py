"""The roof: the ``irisflow`` command line. Nothing in the core or the roles imports it."""

from irisflow.cli.main import app, main

__all__ = ["app", "main"]
