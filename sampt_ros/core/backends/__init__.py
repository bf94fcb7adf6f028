"""Backends: one module per tracker, segmenter or appearance memory.

Each module declares its settings section and registers a builder with
:func:`sampt_ros.core.registry.register`; :func:`sampt_ros.core.registry.discover` imports
every module here (names starting with ``_`` are shared helpers, not backends). Modules import
only light dependencies at import time; their builders import the heavy ones.
"""
