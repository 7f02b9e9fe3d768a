"""The one base class of the mistakes a user can correct: a flag, a path, a file's content, a place to write.

Library functions raise it (or a subclass: :class:`adfnet.fileio.WriteError`,
:class:`adfnet.data.io.ImageReadError`, :class:`adfnet.engine.runs.RunFolderError`) with a message that says
what is wrong and what to do; the command lines print that message as one ``error: ...`` line, without a
traceback. It is a ``ValueError``, so callers that catch ``ValueError`` (the convention before it existed)
still see it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can correct; the message names the flag or file and what to do."""
