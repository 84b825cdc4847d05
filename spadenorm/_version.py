"""The single source of spadenorm's version (read by ``pyproject.toml`` through hatchling)."""

__version__ = "0.1.0"
