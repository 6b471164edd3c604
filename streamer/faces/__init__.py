"""Faces in one image: the detector interface and its backends, the tracker, the anonymizer."""
