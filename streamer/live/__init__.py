"""Live cameras: the only package that holds raw camera frames.

``sources`` opens a camera and ``pipeline`` runs it: capture -> detect -> anonymize -> encode. Only
anonymized frames leave, through each camera's ``hub``; ``cameras`` is the registry the server
starts and asks for status. Outputs and the HTTP side import the hub and the registry, never
``sources`` or ``pipeline`` (the import contract in pyproject.toml). This file imports nothing, so
that importing the hub loads no raw-frame code.
"""
