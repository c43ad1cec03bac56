"""The one configuration of a run: its schema (sections, algorithms as types) and its layering."""
