"""Errors a user can cause; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 1


class ConfigError(UserError):
    """A settings file that loads but cannot be used as it is (e.g. paths a cluster run needs left unset)."""

    exit_code = 2


class SpaceError(UserError):
    """A search-space file with one or more located mistakes."""

    exit_code = 2

    def __init__(self, path: str, messages: list[str]):
        self.path = path
        self.messages = messages
        super().__init__(f"{path}: {len(messages)} error(s)")
