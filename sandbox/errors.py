"""The one exception the sandbox raises: isolation can't be set up (never a failure of user code)."""


class SandboxUnavailable(Exception):
    """Isolation can't be set up here; the message is one line saying what is wrong and how to fix it."""
