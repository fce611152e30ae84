"""regbench's population launcher (``hydra/launcher=population``), found by Hydra's plugin scan.

``hydra_plugins`` itself is a namespace package (no ``__init__.py``), shared with the other
installed Hydra plugins.
"""
