"""The run directory: the run and its manifest, atomic I/O, record schemas, buffers, the run lock."""
