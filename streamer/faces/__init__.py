"""Faces in one image: the detector interface and its backends, the tracker, the anonymizer.

Computation on pixels and boxes, called by the packages that read and write images (``stills``)
and camera frames (``live``); the only file read here is a detector's prepared model. It imports
none of ``stills``, ``live``, ``outputs`` or ``http`` (an import contract in pyproject.toml).
"""
