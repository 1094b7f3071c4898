"""One exception type for every user-facing failure.

The CLI catches :class:`HoikitError` and prints its message as a single line
(no traceback), so a message must name the file, index, key or value at fault.
"""


class HoikitError(Exception):
    """A user-facing error whose message is one clear line."""


class DataError(HoikitError):
    """Malformed dataset file or image. Message names file, image index and field."""


class CheckpointError(HoikitError):
    """Missing, unreadable or mismatched checkpoint. Message names the file and key."""


class ConfigError(HoikitError):
    """Unknown config key or wrong type. Message names the key."""


class TrainingError(HoikitError):
    """Training cannot go on (non-finite loss, ...). Message names the step."""
