"""Errors a user can cause. The command line prints them as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (config, files, arguments) that the user can fix."""


class ConfigError(UserError):
    """A config file or override that cannot be used."""
