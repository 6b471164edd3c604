"""streamer: real-time face anonymization for cameras, video files and still images."""

__version__ = "0.1.0"
