"""The package version: one place, read by pyproject.toml, config.json files and the CLI."""

__version__ = "0.1.0"
