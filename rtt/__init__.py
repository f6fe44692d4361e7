"""rtt: self-hosted real-time system messaging that persists every message, then pushes it live."""

__version__ = "0.1.0"
