"""User-facing errors: a clear, specific message instead of a traceback."""


class UserError(Exception):
    """Bad input from a user or a file: the CLI prints the message and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
