"""The running govnode node: the I/O shell around ``protocol/``."""

__version__ = "0.1.0"
