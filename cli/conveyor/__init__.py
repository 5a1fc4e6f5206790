"""conveyor: the command line, one subcommand per service and inspection (``conveyor.cli``)."""

from importlib.metadata import version

__version__ = version("conveyor")
"""The installed distribution's version: pyproject.toml's, the one place it is written (the
chart's appVersion is checked against it by tests/unit/test_version_is_written_once.py)."""
