"""`schemas.normalize.to_record`, compiled once per schema for the gateway's hot path.

The generic normalizer walks the schema's JSON for every value; here each field's checks are
worked out once, at import, into one generated function per record, so a report_new_msg is
typed several times faster. The result and the FieldError (path, value, expected) are the same
as `to_record`'s for every input: tests/gateway/test_converters.py compares both on the sample
corpus and on crafted values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas.normalize import (
    CONTROL_CHARACTER,
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    FieldError,
    check_minimum,
    integer_converter,
    minimum_of,
    string_converter,
)

Convert = Callable[[Any, str], Any]

_MISSING = object()


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise FieldError(path, value, "true or false")


def _unsupported(kind: Any) -> Convert:
    def convert(value: Any, path: str) -> Any:
        raise FieldError(path, value, f"a value of Avro type {kind}")

    return convert


def _value(kind: Any, identifier: bool) -> Convert:
    if kind in ("int", "long"):
        return integer_converter(kind)
    if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
        return integer_converter("long")
    if kind == "string":
        return string_converter(identifier)
    if kind == "boolean":
        return _boolean
    if isinstance(kind, dict) and kind.get("type") == "record":
        return compile_record(kind)
    return _unsupported(kind)


def _nullable(field_type: Any) -> tuple[bool, Any]:
    if isinstance(field_type, list):
        branches = [branch for branch in field_type if branch != "null"]
        return len(branches) < len(field_type), branches[0]
    return False, field_type


def _array(items: Any) -> Convert:
    convert_item = _value(items, False)

    def convert(value: Any, path: str) -> list[Any]:
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            raise FieldError(path, value, "an array")
        return [convert_item(item, f"{path}[{index}]") for index, item in enumerate(value)]

    return convert


def _field(field: dict[str, Any]) -> Callable[[Any, bool, str], Any]:
    """Build the converter of one field's value, given whether the key was present and the field's path."""
    required = bool(field.get("wehub_required"))
    _, kind = _nullable(field["type"])
    is_text = kind == "string"
    default = _default_of(field)
    if isinstance(kind, dict) and kind.get("type") == "array":
        convert_array = _array(kind["items"])

        def array_field(value: Any, present: bool, path: str) -> Any:
            if required and (not present or value is None or value == ""):
                raise FieldError(path, value if present else None, "a value (the field is required)")
            return convert_array(value, path)

        return array_field
    convert = _value(kind, bool(field.get("wehub_identifier")))
    minimum = minimum_of(field)
    if minimum is not None:
        convert_unbounded = convert

        def convert(value: Any, path: str) -> Any:
            return check_minimum(convert_unbounded(value, path), minimum, value, path)

    def value_field(value: Any, present: bool, path: str) -> Any:
        if value is None or not present:
            if required:
                raise FieldError(path, value if present else None, "a value (the field is required)")
            return default
        if value == "":
            if required:
                expected = "a non-empty string" if is_text else "a value (the field is required)"
                raise FieldError(path, value, expected)
            if not is_text:
                return default
        return convert(value, path)

    return value_field


def compile_record(schema: dict[str, Any]) -> Convert:
    """A function equal to `to_record(schema, value, path)` for every value.

    The generated function takes the values that need no conversion (a str for a string, an int
    in range for an integer...) as they are, inline, and calls the field's converter for the rest.
    """
    plans: list[tuple[str, tuple[str, ...], Callable[[Any, bool, str], Any]]] = []
    lines = []
    namespace: dict[str, Any] = {
        "FieldError": FieldError,
        "MISSING": _MISSING,
        "search_control": CONTROL_CHARACTER.search,
    }
    for field in schema["fields"]:
        name = field["name"]
        if name == "extra":
            continue
        index = len(plans)
        aliases = tuple(field.get("aliases", ()))
        plans.append((name, aliases, _field(field)))
        namespace[f"convert{index}"] = plans[-1][2]
        lines.append(f"    item = value.get({name!r}, MISSING)")
        for alias in aliases:
            lines.append("    if item is MISSING:")
            lines.append(f"        item = value.get({alias!r}, MISSING)")
        lines.append(f"    if {_as_is_condition(field)}:")
        lines.append(f"        field{index} = item")
        lines.append("        used += 1")
        absent = _absent_value(field)
        if absent is not None:
            namespace[f"absent{index}"] = absent[0]
            lines.append("    elif item is MISSING or item is None:")
            lines.append(f"        field{index} = {'[]' if absent[0] == [] else f'absent{index}'}")
            lines.append("        used += item is None")
        else:
            lines.append("    elif item is MISSING:")
            lines.append(f"        field{index} = convert{index}(None, False, prefix + {name!r})")
        lines.append("    else:")
        lines.append(f"        field{index} = convert{index}(item, True, prefix + {name!r})")
        lines.append("        used += 1")
    spellings = [spelling for name, aliases, _ in plans for spelling in (name, *aliases)]
    # Counting the keys used shows whether any is unknown only when no two fields share a spelling.
    count_is_exact = len(spellings) == len(set(spellings))
    entries = [f"{name!r}: field{index}" for index, (name, _, _) in enumerate(plans)]
    if any(field["name"] == "extra" for field in schema["fields"]):
        namespace["extra_of"] = _extra
        namespace["plans"] = plans
        unknown = "used < len(value)" if count_is_exact else "True"
        entries.append(f"'extra': extra_of(value, plans) if {unknown} else None")
    record = ", ".join(entries)
    text = "\n".join([
        "def convert(value, path):",
        "    if not isinstance(value, dict):",
        "        raise FieldError(path, value, 'an object')",
        "    prefix = path + '.' if path else ''",
        "    used = 0",
        *lines,
        f"    return {{{record}}}",
    ]) + "\n"
    exec(compile(text, f"<converter of {schema.get('name', 'record')}>", "exec"), namespace)  # noqa: S102
    convert: Convert = namespace["convert"]
    return convert


def _default_of(field: dict[str, Any]) -> Any:
    """Return what a missing or null value of a field that is not an array becomes: None when nullable."""
    nullable, _ = _nullable(field["type"])
    return None if nullable else field.get("default")


def _absent_value(field: dict[str, Any]) -> tuple[Any] | None:
    """Return the value of an optional field that is missing or null, in a 1-tuple; None for a required field."""
    if field.get("wehub_required"):
        return None
    _, kind = _nullable(field["type"])
    if isinstance(kind, dict) and kind.get("type") == "array":
        return ([],)
    return (_default_of(field),)


def _as_is_condition(field: dict[str, Any]) -> str:
    """Return the test, in Python, that the field's converter would return `item` unchanged; "False" when unknown."""
    required = bool(field.get("wehub_required"))
    _, kind = _nullable(field["type"])
    if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
        kind = "long"
    if kind in ("int", "long"):
        low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
        minimum = minimum_of(field)
        low = max(low, minimum) if minimum is not None else low
        return f"type(item) is int and {low} <= item <= {high}"
    if kind == "string":
        condition = "type(item) is str"
        if required:
            condition += " and item != ''"
        if field.get("wehub_identifier"):
            condition += " and search_control(item) is None"
        return condition
    if kind == "boolean":
        return "type(item) is bool"
    return "False"


def _extra(value: dict[str, Any], plans: list[tuple[str, tuple[str, ...], Any]]) -> str | None:
    used = set()
    for name, aliases, _ in plans:
        if name in value:
            used.add(name)
            continue
        alias = next((alias for alias in aliases if alias in value), None)
        if alias is not None:
            used.add(alias)
    unknown = {key: item for key, item in value.items() if key not in used}
    return orjson.dumps(unknown).decode() if unknown else None
