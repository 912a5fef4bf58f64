"""The one exception type users see: its message is a complete one-line explanation."""


class FaceSearchError(Exception):
    """An error facesearch reports as one clear line (the CLI prints it and exits non-zero)."""
