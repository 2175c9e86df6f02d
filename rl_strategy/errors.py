"""The one exception type users see: a one-line message, printed by the CLI without a traceback."""


class RLTraderError(Exception):
    """Bad input or a refused operation. The message is a complete, single-line explanation."""
