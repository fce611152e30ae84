"""regbench's grid-search-then-refit sweeper (``hydra/sweeper=refit``), found by Hydra's plugin
scan. ``hydra_plugins`` itself is a namespace package shared with the other Hydra plugins."""
