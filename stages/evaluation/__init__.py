"""Held-out evaluation: suites (HumanEval and what derives from it, local files), scoring, runs."""
