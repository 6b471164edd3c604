"""Live cameras: sources, the pipeline's stages and buffers, the hub of anonymized frames, metrics."""
