"""One exception type for every user-facing failure, and the one way to suggest a close name.

The CLI prints `fortifai-bench: error: <message>` and exits 2, so each message must be one line
that says what went wrong and where (file and line, field name, loss spec, ...).
"""

import difflib


class FortifaiError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def did_you_mean(name: str, known, prefix: str = "") -> str:
    """`; did you mean X?` (the closest of `known`, by difflib's ratio, cut-off 0.6), or "" when none is close:
    appended to an "unknown ..." message. `prefix` is put in front of the suggestion (e.g. "train.")."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else ""
