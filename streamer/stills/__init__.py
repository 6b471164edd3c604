"""One image or file in, one out: codec limits, the still-image job, the worker pool, video files."""
