"""The one exception type for problems a user can fix."""


class UserError(ValueError):
    """Bad input, a missing dataset, a damaged file: the CLI prints the message and exits with 2."""
