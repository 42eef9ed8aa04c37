"""Reynolds: parallel orchestration of agent work."""

__version__ = "0.1.0"
