"""Held-out evaluation: suites (the paper's code and math benchmarks, HumanEval and what derives
from it, local files, math-synth), their published data, scoring (sandboxed tests, the math
checker, pass@k), evaluation runs and the paper's table."""
