"""The exceptions carabm raises for people: each carries a message a user can act on.

The CLI turns any :class:`CarabmError` into one line (or one line per problem) and
a non-zero exit code; it never shows a traceback for these.
"""

from __future__ import annotations


class CarabmError(Exception):
    """Base class of every error meant for a user rather than a developer."""

    exit_code = 1


class ConfigError(CarabmError):
    """A configuration (file, YAML or ``--set`` override) is invalid.

    ``problems`` holds one ``"key.path: what is wrong"`` line per problem, so that
    ``carabm validate`` can report them all at once.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BackendError(CarabmError):
    """A requested compute backend is not usable on this machine."""

    exit_code = 2


class InputFileError(CarabmError):
    """A file given by the user is missing, unreadable or of the wrong kind."""

    exit_code = 2


class KernelError(CarabmError):
    """A CUDA kernel failed to compile or was launched with bad arguments."""

    exit_code = 3


class CheckpointError(CarabmError):
    """State that cannot be saved, or saved state that does not fit the run it is restored into."""

    exit_code = 2
