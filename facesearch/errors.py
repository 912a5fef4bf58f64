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


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it needs, for messages: counted(1, "face") is "1 face",
    counted(3, "face") "3 faces", counted(2, "copy", "copies") "2 copies"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
