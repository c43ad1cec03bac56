"""Watching a run: the report (figures and summary), metric sinks, the GPU side of `azr doctor`."""
