"""loopmon: watch a readiness-based event loop work."""

__version__ = "0.1.0"
