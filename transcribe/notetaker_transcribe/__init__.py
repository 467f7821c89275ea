"""Speech-to-text for notetaker: faster-whisper (CPU default) and WhisperX (GPU).

Importing this package is cheap; the engines import their libraries on first use.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
