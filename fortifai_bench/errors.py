"""One exception type for every user-facing failure.

The CLI prints `fortifai-bench: error: <message>` and exits 2, so each message must be one line
that says what went wrong and where (file and line, field name, loss spec, ...).
"""


class FortifaiError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
