"""The one exception type users see: its message is a complete one-line explanation."""


class FaceSearchError(Exception):
    """An error facesearch reports as one clear line (the CLI prints it and exits non-zero)."""


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message, for one-line reports; for a database error
    wrapped by SQLAlchemy, its driver's message (`orig`); the type's name when the message is
    empty, and before it with `with_type` ("RuntimeError: mediapipe exploded")."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if with_type else lines[0]
