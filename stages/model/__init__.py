"""The model service: names and built-ins, adapters, loading, the policy, generation, export."""
