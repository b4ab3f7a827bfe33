"""Turn a client's JSON into a record of an Avro schema, and back.

The schema drives the checks, so adding a field to an `.avsc` file is all it takes to type it.
What real clients send is absorbed: numbers as strings, null or "" for absent values, field
spellings listed in a field's `aliases`, and unknown fields, which are kept as a JSON object in
the record's `extra` field. Fields marked `wehub_required` must be present, fields marked
`wehub_identifier` (wxids, room ids) must not contain control characters, and an integer field
with `wehub_minimum` must not be below it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_SHOWN_VALUE_CHARS = 40


class FieldError(ValueError):
    """A value that does not fit its field; `path`, `value` and `expected` name the problem."""

    def __init__(self, path: str, value: Any, expected: str) -> None:
        self.path = path
        self.value = value
        self.expected = expected
        super().__init__(f"{path}: {shown_value(value)} is invalid, expected {expected}")


def shown_value(value: Any) -> str:
    """Render a bad value short and with its type visible, safe to put in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > _SHOWN_VALUE_CHARS:
        text = text[: _SHOWN_VALUE_CHARS - 3] + "..."
    return text


def has_control_character(text: str) -> bool:
    """Tell whether `text` contains an ASCII control character (U+0000-U+001F or U+007F)."""
    return CONTROL_CHARACTER.search(text) is not None


def _nullable(field_type: Any) -> tuple[bool, Any]:
    if isinstance(field_type, list):
        branches = [branch for branch in field_type if branch != "null"]
        return len(branches) < len(field_type), branches[0]
    return False, field_type


def integer_converter(kind: str) -> Callable[[Any, str], int]:
    """Return the check of an Avro `int` or `long` field: integers, integral floats and digit strings.

    The returned function takes the value and its field path, and raises FieldError for a bool,
    anything else that is not an integer, or a number outside the kind's range.
    """
    low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
    expected = "an integer" if kind == "int" else "an integer (64-bit)"
    out_of_range = f"an integer between {low} and {high}"

    def convert(value: Any, path: str) -> int:
        # type() first: a plain int is by far the most common value on the gateway's hot path.
        kind_of_value = type(value)
        number: int
        if kind_of_value is int:
            number = value
        elif kind_of_value is bool:
            raise FieldError(path, value, expected)
        elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            number = int(value)
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            number = int(value.strip())
        else:
            raise FieldError(path, value, expected)
        if not low <= number <= high:
            raise FieldError(path, value, out_of_range)
        return number

    return convert


_INTEGER_CONVERTERS = {"int": integer_converter("int"), "long": integer_converter("long")}


def _to_integer(value: Any, path: str, kind: str) -> int:
    return _INTEGER_CONVERTERS[kind](value, path)


def string_converter(identifier: bool) -> Callable[[Any, str], str]:
    """Return the check of an Avro `string` field: numbers become text, ids may not contain control characters.

    The returned function takes the value and its field path, and raises FieldError for a bool or
    anything else that is neither text nor a number.
    """

    def convert(value: Any, path: str) -> str:
        if type(value) is str:
            if identifier and has_control_character(value):
                raise FieldError(path, value, "an id without control characters")
            return value
        if isinstance(value, bool):
            raise FieldError(path, value, "a string")
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            raise FieldError(path, value, "a string")
        if identifier and has_control_character(value):
            raise FieldError(path, value, "an id without control characters")
        return str(value)

    return convert


_STRING_CONVERTERS = {False: string_converter(False), True: string_converter(True)}


def _to_string(value: Any, path: str, identifier: bool) -> str:
    return _STRING_CONVERTERS[identifier](value, path)


def _is_absent(value: Any) -> bool:
    return value is None or value == ""


def minimum_of(field: dict[str, Any]) -> int | None:
    """Return the lowest value an integer field accepts (`wehub_minimum`), or None when any value fits."""
    bound = field.get("wehub_minimum")
    return None if bound is None else int(bound)


def check_minimum(number: int, minimum: int, value: Any, path: str) -> int:
    """Return `number` when it is at least `minimum`; raises FieldError naming `value` otherwise."""
    if number < minimum:
        raise FieldError(path, value, f"an integer of at least {minimum}")
    return number


def to_record(schema: dict[str, Any], value: Any, path: str) -> dict[str, Any]:
    """Convert a JSON object to a record of `schema` (an expanded record schema).

    Raises FieldError naming the dotted path of the first value that does not fit.
    """
    if not isinstance(value, dict):
        raise FieldError(path, value, "an object")
    record: dict[str, Any] = {}
    used: set[str] = set()
    has_extra = False
    for field in schema["fields"]:
        name = field["name"]
        if name == "extra":
            has_extra = True
            continue
        key = name if name in value else next((alias for alias in field.get("aliases", ()) if alias in value), None)
        if key is not None:
            used.add(key)
        field_path = f"{path}.{name}" if path else name
        record[name] = _to_field(field, value.get(key) if key is not None else None, key is not None, field_path)
    unknown = {key: item for key, item in value.items() if key not in used}
    if has_extra:
        record["extra"] = orjson.dumps(unknown).decode() if unknown else None
    return record


def _to_field(field: dict[str, Any], value: Any, present: bool, path: str) -> Any:
    required = bool(field.get("wehub_required"))
    nullable, kind = _nullable(field["type"])
    is_text = kind == "string"
    if required and (not present or value is None or (value == "" and not is_text)):
        raise FieldError(path, value if present else None, "a value (the field is required)")
    if required and is_text and value == "":
        raise FieldError(path, value, "a non-empty string")
    if isinstance(kind, dict) and kind.get("type") == "array":
        return _to_array(kind["items"], value, path)
    if not present or value is None or (_is_absent(value) and not is_text):
        if nullable:
            return None
        return field.get("default")
    converted = _to_value(kind, value, path, bool(field.get("wehub_identifier")))
    minimum = minimum_of(field)
    return converted if minimum is None else check_minimum(converted, minimum, value, path)


def _to_array(items: Any, value: Any, path: str) -> list[Any]:
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise FieldError(path, value, "an array")
    return [_to_value(items, item, f"{path}[{index}]", False) for index, item in enumerate(value)]


def _to_value(kind: Any, value: Any, path: str, identifier: bool) -> Any:
    if kind in ("int", "long"):
        return _to_integer(value, path, kind)
    if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
        return _to_integer(value, path, "long")
    if kind == "string":
        return _to_string(value, path, identifier)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise FieldError(path, value, "true or false")
    if isinstance(kind, dict) and kind.get("type") == "record":
        return to_record(kind, value, path)
    raise FieldError(path, value, f"a value of Avro type {kind}")


def to_protocol(schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the protocol's JSON object from a record: null fields left out, `extra` merged back."""
    result: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        if name == "extra":
            continue
        value = record.get(name)
        if value is None:
            continue
        _, kind = _nullable(field["type"])
        result[name] = _from_value(kind, value)
    extra = record.get("extra")
    if extra:
        result.update(orjson.loads(extra))
    return result


def _from_value(kind: Any, value: Any) -> Any:
    if isinstance(kind, dict) and kind.get("type") == "array":
        return [_from_value(kind["items"], item) for item in value]
    if isinstance(kind, dict) and kind.get("type") == "record":
        return to_protocol(kind, value)
    return value
