"""The one exception type users see: its message is a complete one-line explanation."""
import re


class FaceSearchError(Exception):
    """An error facesearch reports as one clear line (the CLI prints it and exits non-zero)."""


#: How a message shared by the CLI and Python names an option: the flag, then the argument
#: ("--face (face=) 3 is out of range"); `as_flags` / `as_arguments` keep one of the two.
_BOTH_NAMES = re.compile(r"(--[a-z][a-z-]*) \(([a-z_]+)=\)")


def as_flags(message: str) -> str:
    """The message as the command line says it: "--face (face=) 3" -> "--face 3"."""
    return _BOTH_NAMES.sub(r"\1", message)


def as_arguments(message: str) -> str:
    """The message as an API of parameters says it: "--face (face=) 3" -> "face 3"."""
    return _BOTH_NAMES.sub(r"\2", message)


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


class ArgumentTypeError(FaceSearchError, TypeError):
    """A Python API argument of the wrong type, said in one line ("text must be a string, got
    int"); also a TypeError, as Python's own would be."""


def require_type(value: object, types: type | tuple[type, ...], name: str, expected: str) -> None:
    """ArgumentTypeError "NAME must be EXPECTED, got TYPE" unless `value` is an instance of
    `types` (a bool is not taken for a number unless bool is one of them); a short str or number
    given is quoted too ("got str 'abc'")."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
        return
    raise ArgumentTypeError(f"{name} must be {expected}, got {type_named(value)}")


def type_named(value: object) -> str:
    """A value's type for messages: "None", "int", or with a short str or number its value too
    ("str 'abc'", "float 2.5")."""
    if value is None:
        return "None"
    shown = repr(value)
    if isinstance(value, (str, int, float)) and len(shown) <= 40 and "\n" not in shown:
        return f"{type(value).__name__} {shown}"
    return type(value).__name__
