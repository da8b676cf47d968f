"""The one kind of error an operator tool raises for the CLI to print as a single line.

The message says what is wrong and what to do; `exit_code` says whose fault it is: 2 for a mistake
in what the user asked (a bad file, an unknown pipeline), 1 for something that did not happen (the
stack is down, a run failed or timed out). Anything else escaping an operator tool is a bug.
"""

from __future__ import annotations


class OperatorError(Exception):
    """A user mistake: one line on stderr, exit code 2."""

    exit_code = 2


class NotReachable(OperatorError):
    """The stack (or the cloud service) did not answer: nothing was changed by this command."""

    exit_code = 1


class RunFailed(OperatorError):
    """A run the command followed failed, or gave no outcome in time."""

    exit_code = 1
