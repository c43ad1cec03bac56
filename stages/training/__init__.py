"""The update's training maths: token log-probs, losses, the algorithms as types, the step,
optimizer and RNG state, the memory meter."""
