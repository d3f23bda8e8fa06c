"""JSON output: protojson of a reply, as upstream's ``--json`` prints it.

Proto field names (snake_case) and fields with default values are emitted, like
Go's ``protojson`` with ``EmitUnpopulated``. The keyword that asks protobuf for the
defaults was renamed in protobuf 5.26 (``including_default_value_fields`` ->
``always_print_fields_with_no_presence``); both are handled.
"""

from __future__ import annotations

from crane_cli.errors import EXIT_FORMAT, CliError


def _options(json_format: object) -> dict[str, bool]:
    import inspect

    params = inspect.signature(json_format.MessageToDict).parameters  # type: ignore[attr-defined]
    if "always_print_fields_with_no_presence" in params:
        return {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    return {"preserving_proto_field_name": True, "including_default_value_fields": True}


def _in_field_order(data: dict, descriptor: object) -> dict:
    """Reorder ``data`` (and nested messages) by field number, as Go's protojson prints them."""
    out = {}
    for field in descriptor.fields:  # type: ignore[attr-defined]
        name = field.name
        if name not in data:
            continue
        value = data[name]
        sub = field.message_type
        if sub is not None and not sub.GetOptions().map_entry:
            if isinstance(value, list):
                value = [_in_field_order(v, sub) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                value = _in_field_order(value, sub)
        out[name] = value
    for name, value in data.items():  # anything not described (should not happen)
        out.setdefault(name, value)
    return out


def to_dict(message: object) -> dict:
    """The reply as a JSON-ready dict (proto field names, defaults included, in field order)."""
    from google.protobuf import json_format

    try:
        data = json_format.MessageToDict(message, **_options(json_format))  # type: ignore[arg-type]
        return _in_field_order(data, message.DESCRIPTOR)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - exit code 5 is upstream's "JSON marshalling failed"
        raise CliError(f"Failed to render JSON: {exc}", EXIT_FORMAT) from None


def dumps(data: object) -> str:
    """Serialize a JSON-ready value the way :func:`to_json` does (2-space indent)."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)


def to_json(message: object) -> str:
    """protojson text of ``message``: proto field names, defaults emitted, 2-space indent."""
    return dumps(to_dict(message))
