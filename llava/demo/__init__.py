"""`make demo`: the real pipeline (same entrypoints and flags as the GPU recipes) on the toy world."""
