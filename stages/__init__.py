"""AZR stages: config, run directory, records, and one module per stage with a `run(...)`.

Importing this package is cheap; torch/transformers/peft are imported inside the functions that
need them.
"""

__version__ = "0.1.0"
