"""The paper's logic, pure: task kinds and ids, prompts, parsers, rewards and TRR++ advantages."""
