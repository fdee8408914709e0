"""Errors a user can fix, as opposed to bugs.

Every loader and validator raises :class:`InputError` naming the file (or SPEC)
and the problem; the command line prints it as one line and exits with 2.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a file, a SPEC or a value that cannot be used.

    :param source: what the input was (a file path, a SPEC string, ``"--load"``)
    :param problem: what is wrong with it, phrased so the user knows what to fix
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self):
        """Pickle by both arguments, so the error crosses process boundaries
        intact (vectorised environments, process pools)."""
        return (type(self), (self.source, self.problem))


class SchedulerError(Exception):
    """A scheduler asked for something impossible (a bug in that scheduler)."""
