"""attnkit: an auto-graded exercise kit for four attention mechanisms."""

__version__ = "0.1.0"
