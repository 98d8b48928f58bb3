"""supplymon: a streaming supply monitor for centralized procurement (集采)."""

__version__ = "0.1.0"
