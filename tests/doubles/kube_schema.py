# SPDX-License-Identifier: Apache-2.0
"""Pieces of the Kubernetes API server's request processing that the API
server double (tests/doubles/kube_apiserver.py) needs, in the standard
library: field errors (k8s.io/apimachinery/pkg/util/validation/field), name
and label validation (apimachinery/pkg/util/validation), the OpenAPI v3
structural-schema subset that custom resources are pruned, defaulted and
validated with (apiextensions-apiserver + kube-openapi's messages), label
and field selectors (apimachinery/pkg/labels, pkg/fields), and the patch
formats (RFC 7386 merge patch, RFC 6902 JSON patch, a strategic merge patch
subset).

Messages follow the Go code's formats (kube-openapi validate errors, field
ErrorBody) so that clients see what a real server would say; where the Go
code prints a Go value with %#v, this prints JSON instead.
"""

import base64
import copy
import datetime
import json
import math
import re

# ---------------------------------------------------------------- field errors

# field.ErrorType: (String(), StatusCause reason)
ERROR_TYPES = {
    "Required": ("Required value", "FieldValueRequired"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "Internal": ("Internal error", "InternalError"),
}
_NO_VALUE = object()


class RawValue:
    """A bad value printed verbatim (e.g. Go's `0x0` for a uint64 zero)."""

    def __init__(self, text):
        self.text = text


def go_value(v) -> str:
    """A bad value as field.Error prints it: strings quoted, numbers and
    booleans plain, null as `null`, anything else as JSON."""
    if isinstance(v, RawValue):
        return v.text
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


class FieldError:
    """One field.Error: type (a key of ERROR_TYPES), field path, bad value,
    detail."""

    def __init__(self, etype, field, value=_NO_VALUE, detail=""):
        self.type, self.field, self.value, self.detail = etype, field, value, detail

    def body(self) -> str:
        name = ERROR_TYPES[self.type][0]
        if self.type in ("Required", "Forbidden", "TooLong", "Internal") or \
                self.value is _NO_VALUE:
            s = name
        else:
            s = f"{name}: {go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self):
        return f"{self.field}: {self.body()}" if self.field else self.body()

    __repr__ = __str__

    def cause(self) -> dict:
        return {"reason": ERROR_TYPES[self.type][1], "message": self.body(), "field": self.field}


def aggregate(errors) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or [a, b, ...]."""
    msgs = []
    for e in errors:
        m = str(e)
        if m not in msgs:
            msgs.append(m)
    return msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------- names, labels

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


def dns1123_subdomain(value: str) -> list:
    msgs = []
    if len(value) > 253:
        msgs.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        msgs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is "
                    f"'{_DNS1123_SUBDOMAIN}')")
    return msgs


def dns1123_label(value: str) -> list:
    msgs = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        msgs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character "
                    "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                    f"'{_DNS1123_LABEL}')")
    return msgs


def qualified_name(value: str) -> list:
    """IsQualifiedName: [prefix/]name (label and annotation keys)."""
    parts = value.split("/")
    msgs = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            msgs.append("prefix part must be non-empty")
        else:
            msgs += ["prefix part " + m for m in dns1123_subdomain(prefix)]
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                "'my.name',  or '123-abc', regex used for validation is "
                f"'{_QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    if not name:
        msgs.append("name part must be non-empty")
    elif len(name) > 63:
        msgs.append("name part must be no more than 63 characters")
    elif not re.fullmatch(_QUALIFIED_NAME, name):
        msgs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                    f"'my.name',  or '123-abc', regex used for validation is '{_QUALIFIED_NAME}')")
    return msgs


def label_value(value: str) -> list:
    msgs = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        msgs.append("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    f"validation is '{_LABEL_VALUE}')")
    return msgs


def validate_object_meta(meta, namespaced: bool, name_check=dns1123_subdomain,
                         path="metadata") -> list:
    """ValidateObjectMeta: name (or generateName), namespace presence,
    labels, annotations, finalizers, ownerReferences."""
    errs = []
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        errs.append(FieldError("Required", child(path, "name"),
                               detail="name or generateName is required"))
    elif name:
        for m in name_check(name):
            errs.append(FieldError("Invalid", child(path, "name"), name, m))
    if namespaced and not meta.get("namespace"):
        errs.append(FieldError("Required", child(path, "namespace")))
    if not namespaced and meta.get("namespace"):
        errs.append(FieldError("Forbidden", child(path, "namespace"),
                               detail="not allowed on this type"))
    for kind in ("labels", "annotations"):
        m = meta.get(kind)
        if m is None:
            continue
        if not isinstance(m, dict):
            errs.append(FieldError("Invalid", child(path, kind), m, "must be an object"))
            continue
        for k, v in m.items():
            for msg in qualified_name(k):
                errs.append(FieldError("Invalid", child(path, kind), k, msg))
            if not isinstance(v, str):
                errs.append(FieldError("Invalid", f"{path}.{kind}", v, "must be a string"))
            elif kind == "labels":
                for msg in label_value(v):
                    errs.append(FieldError("Invalid", f"{path}.labels", v, msg))
        if kind == "annotations":
            size = sum(len(k) + len(v) for k, v in m.items() if isinstance(v, str))
            if size > 256 * 1024:
                errs.append(FieldError("TooLong", child(path, "annotations"), "",
                                       "may not be longer than 262144"))
    fins = meta.get("finalizers") or []
    if not isinstance(fins, list):
        errs.append(FieldError("Invalid", child(path, "finalizers"), fins, "must be a list"))
    else:
        for i, f in enumerate(fins):
            for msg in qualified_name(f) if isinstance(f, str) else ["must be a string"]:
                errs.append(FieldError("Invalid", f"{path}.finalizers[{i}]", f, msg))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"{path}.ownerReferences[{i}]"
        for fld in ("apiVersion", "kind", "name", "uid"):
            if not (isinstance(ref, dict) and ref.get(fld)):
                errs.append(FieldError("Invalid", child(p, fld), "",
                                       f"{fld} must not be empty"))
    return errs


# ---------------------------------------------------------------- OpenAPI schema

def json_type(v) -> str:
    """The JSON type name kube-openapi quotes in type errors."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_ok(v, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or \
            (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")


def _format_ok(v: str, fmt: str) -> bool:
    if fmt == "date-time":
        if not _DATE_TIME.match(v):
            return False
        try:
            datetime.datetime.fromisoformat(v[:19])
        except ValueError:
            return False
        return True
    if fmt == "date":
        try:
            datetime.date.fromisoformat(v)
        except ValueError:
            return False
        return True
    if fmt == "uuid":
        return bool(_UUID.match(v))
    if fmt == "byte":
        try:
            base64.b64decode(v, validate=True)
        except ValueError:
            return False
        return True
    if fmt == "int-or-string":
        return True
    return True  # formats the double does not check


def _ecma_to_python(pattern: str) -> str:
    # ECMA-262 and Python's re agree on what CRD patterns use in practice;
    # \d, \w, classes, anchors and quantifiers are the same.
    return pattern


def _is_embedded(schema) -> bool:
    return bool(schema.get("x-kubernetes-embedded-resource"))


def _preserves(schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value, schema, path: str, unknown: list, root: bool = True):
    """Structural pruning: drop object fields the schema does not specify
    (unless x-kubernetes-preserve-unknown-fields); their paths are appended
    to unknown.  metadata of the root and of embedded resources is kept as
    ObjectMeta (the caller strips unknown metadata fields)."""
    if schema is None:
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for k in list(value.keys()):
            sub = None
            if props and k in props:
                sub = props[k]
            elif isinstance(addl, dict):
                sub = addl
            elif addl is True:
                continue
            elif (root or _is_embedded(schema)) and k in ("apiVersion", "kind", "metadata"):
                continue
            elif _preserves(schema):
                continue
            else:
                unknown.append(child(path, k))
                del value[k]
                continue
            if (root or _is_embedded(schema)) and k == "metadata":
                continue
            prune(value[k], sub, child(path, k), unknown, root=False)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                prune(v, items, f"{path}[{i}]", unknown, root=False)


def apply_defaults(value, schema):
    """Structural defaulting: a missing (or null, when not nullable) field
    with a `default` gets a deep copy of it; recurses into objects and
    array items."""
    if schema is None:
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, sub in props.items():
            if not isinstance(sub, dict):
                continue
            if "default" in sub and (k not in value or (value[k] is None and
                                                        not sub.get("nullable"))):
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                apply_defaults(value[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in value:
                if k not in props:
                    apply_defaults(value[k], addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            apply_defaults(v, schema["items"])


def validate_value(value, schema, path: str, errs: list, root: bool = False) -> None:
    """Validate value against an OpenAPI v3 (structural) schema node; append
    FieldErrors.  Subset: type, nullable, enum, format (date-time, date,
    uuid, byte), pattern, minLength/maxLength, minimum/maximum (+ exclusive),
    multipleOf, items, minItems/maxItems, uniqueItems, x-kubernetes-list-type
    set/map uniqueness, properties, required, additionalProperties,
    minProperties/maxProperties, allOf/anyOf/oneOf/not,
    x-kubernetes-int-or-string, x-kubernetes-embedded-resource (apiVersion,
    kind required).  x-kubernetes-validations (CEL) is not evaluated."""
    if schema is None:
        return
    name = path or "."

    def invalid(detail, bad=value, etype="Invalid"):
        errs.append(FieldError(etype, path, bad, detail))

    if value is None:
        if schema.get("nullable") or (not schema.get("type") and not
                                      schema.get("x-kubernetes-int-or-string")):
            return
        t = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        invalid(f"{name} in body must be of type {t}: \"null\"", "null", "TypeInvalid")
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (_type_ok(value, "integer") or isinstance(value, str)):
            invalid(f"{name} in body must be of type integer-or-string: "
                    f"\"{json_type(value)}\"", json_type(value), "TypeInvalid")
            return
    elif schema.get("type"):
        t = schema["type"]
        if not _type_ok(value, t):
            jt = json_type(value)
            invalid(f"{name} in body must be of type {t}: \"{jt}\"", jt, "TypeInvalid")
            return
    if "enum" in schema and value not in schema["enum"]:
        allowed = [e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
                   for e in schema["enum"]]
        errs.append(FieldError("NotSupported", path, value,
                               "supported values: " + ", ".join(json.dumps(a)
                                                                for a in allowed)))
    if isinstance(value, str):
        n = len(value)
        if "maxLength" in schema and n > schema["maxLength"]:
            errs.append(FieldError("TooLong", path, value,
                                   f"may not be longer than {schema['maxLength']}"))
        if "minLength" in schema and n < schema["minLength"]:
            invalid(f"{name} in body should be at least {schema['minLength']} chars long")
        if "pattern" in schema:
            try:
                ok = re.search(_ecma_to_python(schema["pattern"]), value) is not None
            except re.error:
                ok = True
            if not ok:
                invalid(f"{name} in body should match '{schema['pattern']}'")
        fmt = schema.get("format")
        if fmt and not _format_ok(value, fmt):
            invalid(f"{name} in body must be of type {fmt}: {json.dumps(value)}",
                    etype="TypeInvalid")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            m, exc = schema["minimum"], schema.get("exclusiveMinimum") is True
            if value < m or (exc and value == m):
                word = "greater than" if exc else "greater than or equal to"
                invalid(f"{name} in body should be {word} {go_value(m)}")
        if "maximum" in schema:
            m, exc = schema["maximum"], schema.get("exclusiveMaximum") is True
            if value > m or (exc and value == m):
                word = "less than" if exc else "less than or equal to"
                invalid(f"{name} in body should be {word} {go_value(m)}")
        if schema.get("multipleOf"):
            q = value / schema["multipleOf"]
            if not math.isclose(q, round(q)):
                invalid(f"{name} in body should be a multiple of {go_value(schema['multipleOf'])}")
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                validate_value(v, items, f"{path}[{i}]", errs)
        if "minItems" in schema and len(value) < schema["minItems"]:
            invalid(f"{name} in body should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(FieldError("TooMany", path, len(value),
                                   f"must have at most {schema['maxItems']} items"))
        if schema.get("uniqueItems"):
            seen = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(seen)) != len(seen):
                invalid(f"{name} in body shouldn't contain duplicates")
        lt = schema.get("x-kubernetes-list-type")
        if lt == "set":
            seen = set()
            for i, v in enumerate(value):
                k = json.dumps(v, sort_keys=True)
                if k in seen:
                    errs.append(FieldError("Duplicate", f"{path}[{i}]", v))
                seen.add(k)
        elif lt == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen = set()
            for i, v in enumerate(value):
                if not isinstance(v, dict):
                    continue
                k = json.dumps([v.get(x) for x in keys])
                if k in seen:
                    errs.append(FieldError("Duplicate", f"{path}[{i}]",
                                           {x: v.get(x) for x in keys}))
                seen.add(k)
    if isinstance(value, dict):
        for r in schema.get("required") or []:
            if r not in value:
                errs.append(FieldError("Required", child(path, r)))
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            if k in props:
                if (root or _is_embedded(schema)) and k == "metadata":
                    continue
                validate_value(v, props[k], child(path, k), errs)
            elif isinstance(addl, dict):
                validate_value(v, addl, child(path, k), errs)
        if _is_embedded(schema):
            for k in ("apiVersion", "kind"):
                if not value.get(k):
                    errs.append(FieldError("Required", child(path, k),
                                           detail="must not be empty"))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            invalid(f"{name} in body should have at least {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errs.append(FieldError("TooMany", path, len(value),
                                   f"must have at most {schema['maxProperties']} items"))
    for sub in schema.get("allOf") or []:
        validate_value(value, sub, path, errs)
    if schema.get("anyOf"):
        if not any(_passes(value, s, path) for s in schema["anyOf"]):
            invalid(f"{name} in body must validate at least one schema (anyOf)")
    if schema.get("oneOf"):
        n = sum(_passes(value, s, path) for s in schema["oneOf"])
        if n != 1:
            invalid(f"{name} in body must validate one and only one schema (oneOf)")
    if isinstance(schema.get("not"), dict) and _passes(value, schema["not"], path):
        invalid(f"{name} in body must not validate the schema (not)")


def _passes(value, schema, path) -> bool:
    e = []
    validate_value(value, schema, path, e)
    return not e


def check_structural(schema, path: str, errs: list, root: bool = True) -> None:
    """The structural-schema rules a CRD's openAPIV3Schema must follow
    (subset): every node has a type unless x-kubernetes-int-or-string or
    x-kubernetes-preserve-unknown-fields; the root is an object;
    properties and additionalProperties exclude each other; metadata at
    the root may only restrict name and generateName; no $ref."""
    if not isinstance(schema, dict):
        errs.append(FieldError("Invalid", path, schema, "must be an object"))
        return
    if "$ref" in schema:
        errs.append(FieldError("Forbidden", child(path, "$ref"), detail="$ref is not allowed"))
    t = schema.get("type")
    if root and t != "object":
        errs.append(FieldError("Invalid" if t else "Required", child(path, "type"),
                               *((t, "must be object at the root") if t else
                                 (_NO_VALUE, "must not be empty at the root"))))
    if not t and not schema.get("x-kubernetes-int-or-string") and not _preserves(schema) \
            and not root:
        errs.append(FieldError("Required", child(path, "type"),
                               detail="must not be empty for specified object fields"))
    if t and t not in ("object", "array", "string", "integer", "number", "boolean"):
        errs.append(FieldError("NotSupported", child(path, "type"), t,
                               'supported values: "array", "boolean", "integer", "number", '
                               '"object", "string"'))
    if schema.get("properties") and isinstance(schema.get("additionalProperties"), dict):
        errs.append(FieldError("Forbidden", child(path, "additionalProperties"),
                               detail="additionalProperties and properties are mutual "
                                      "exclusive"))
    for k, sub in (schema.get("properties") or {}).items():
        p = f"{path}.properties[{k}]"
        if root and k == "metadata" and isinstance(sub, dict):
            extra = set(sub.get("properties") or {}) - {"name", "generateName"}
            if extra or (set(sub) - {"type", "properties", "description"}):
                errs.append(FieldError("Forbidden", p, detail="must not specify anything other "
                                       "than name and generateName, but metadata is implicitly "
                                       "specified"))
        check_structural(sub, p, errs, root=False)
    if isinstance(schema.get("additionalProperties"), dict):
        check_structural(schema["additionalProperties"], f"{path}.additionalProperties", errs,
                         root=False)
    if isinstance(schema.get("items"), dict):
        check_structural(schema["items"], f"{path}.items", errs, root=False)
    elif t == "array" and "items" not in schema:
        errs.append(FieldError("Required", child(path, "items"),
                               detail="must be specified"))
    for key in ("pattern",):
        if key in schema:
            try:
                re.compile(schema[key])
            except re.error as e:
                errs.append(FieldError("Invalid", child(path, key), schema[key],
                                       f"must be a valid regular expression, but isn't: {e}"))


# ---------------------------------------------------------------- selectors

class SelectorError(ValueError):
    pass


_LABEL_TOKEN = re.compile(r"\s*(!=|==|=|\bnotin\b|\bin\b|!|\(|\)|,|>|<|[^\s!=,()<>]+)")


def parse_label_selector(text: str) -> list:
    """labels.Parse: a list of (key, op, values); op in =, !=, in, notin,
    exists, !exists, gt, lt."""
    reqs = []
    if not text or not text.strip():
        return reqs
    tokens = []
    pos = 0
    while pos < len(text):
        m = _LABEL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unable to parse requirement: unexpected character at {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    i = 0

    def expect_values():
        nonlocal i
        if i >= len(tokens) or tokens[i] != "(":
            raise SelectorError("unable to parse requirement: found '%s', expected: '('"
                                % (tokens[i] if i < len(tokens) else ""))
        i += 1
        vals = []
        while i < len(tokens) and tokens[i] != ")":
            if tokens[i] != ",":
                vals.append(tokens[i])
            i += 1
        if i >= len(tokens):
            raise SelectorError("unable to parse requirement: found '', expected: ')'")
        i += 1
        return vals

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            i += 1
            if i >= len(tokens):
                raise SelectorError("unable to parse requirement: found '', expected: identifier")
            key = tokens[i]
            i += 1
            reqs.append((key, "!exists", []))
        else:
            key = tok
            i += 1
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append((key, "exists", []))
            else:
                op = tokens[i]
                i += 1
                if op in ("=", "=="):
                    val = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if val:
                        i += 1
                    reqs.append((key, "=", [val]))
                elif op == "!=":
                    val = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if val:
                        i += 1
                    reqs.append((key, "!=", [val]))
                elif op in ("in", "notin"):
                    reqs.append((key, op, expect_values()))
                elif op in (">", "<"):
                    if i >= len(tokens):
                        raise SelectorError("unable to parse requirement: found '', expected: "
                                            "integer")
                    try:
                        int(tokens[i])
                    except ValueError:
                        raise SelectorError("unable to parse requirement: for 'Gt', 'Lt' "
                                            "operators, the value must be an integer") from None
                    reqs.append((key, "gt" if op == ">" else "lt", [tokens[i]]))
                    i += 1
                else:
                    raise SelectorError(f"unable to parse requirement: found '{op}', expected: "
                                        "in, notin, =, ==, !=, gt, lt")
        for key, _, vals in reqs[-1:]:
            for msg in qualified_name(key):
                raise SelectorError(f"unable to parse requirement: invalid label key "
                                    f"\"{key}\": {msg}")
            for v in vals:
                for msg in label_value(v):
                    raise SelectorError(f"unable to parse requirement: invalid label value: "
                                        f"\"{v}\": at key: \"{key}\": {msg}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"unable to parse requirement: found '{tokens[i]}', "
                                    "expected: ','")
            i += 1
    return reqs


def label_selector_from_struct(sel) -> list:
    """A metav1.LabelSelector (matchLabels, matchExpressions) as requirements."""
    reqs = [(k, "=", [v]) for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists",
              "DoesNotExist": "!exists", "Gt": "gt", "Lt": "lt"}[e["operator"]]
        reqs.append((e["key"], op, list(e.get("values") or [])))
    return reqs


def labels_match(reqs, labels) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=" and not (has and v == vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
        if op in ("gt", "lt"):
            try:
                n = int(v) if has else None
            except ValueError:
                return False
            if n is None or (op == "gt" and not n > int(vals[0])) or \
                    (op == "lt" and not n < int(vals[0])):
                return False
    return True


def _split_unescaped(text: str, sep: str) -> list:
    parts, cur, i = [], "", 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if c == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def parse_field_selector(text: str) -> list:
    """fields.ParseSelector: a list of (field, op, value); op = or !=."""
    reqs = []
    if not text or not text.strip():
        return reqs
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                f, v = part[:idx], part[idx + len(op):]
                reqs.append((f.strip(), "!=" if op == "!=" else "=", _unescape(v)))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
    return reqs


def _find_unescaped(s: str, op: str) -> int:
    i = 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s.startswith(op, i):
            return i
        i += 1
    return -1


def fields_match(reqs, fields: dict) -> bool:
    for f, op, v in reqs:
        actual = fields.get(f, "")
        if op == "=" and actual != v:
            return False
        if op == "!=" and actual == v:
            return False
    return True


# ---------------------------------------------------------------- patches

class PatchError(ValueError):
    pass


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts, path):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError(f"doc is missing path: {path!r}")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise PatchError(f"doc is missing path: {path!r}") from None
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return cur


def json_patch(doc, ops):
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)

        def parent_of(parts=parts, path=path):
            if not parts:
                raise PatchError(f"cannot {kind} the document root")
            return _walk(doc, parts[:-1], path), parts[-1]

        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        elif kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(f"{kind} operation has no value")
            if not parts:
                doc = copy.deepcopy(op["value"])
                continue
            parent, last = parent_of()
            if isinstance(parent, dict):
                if kind == "replace" and last not in parent:
                    raise PatchError(f"replace operation does not apply: doc is missing key: "
                                     f"{path}: missing value")
                parent[last] = copy.deepcopy(op["value"])
            elif isinstance(parent, list):
                if last == "-" and kind == "add":
                    parent.append(copy.deepcopy(op["value"]))
                else:
                    try:
                        idx = int(last)
                    except ValueError:
                        raise PatchError(f"invalid array index {last!r}") from None
                    if kind == "add":
                        if not 0 <= idx <= len(parent):
                            raise PatchError(f"add operation does not apply: index {idx} out "
                                             "of bounds")
                        parent.insert(idx, copy.deepcopy(op["value"]))
                    else:
                        if not 0 <= idx < len(parent):
                            raise PatchError(f"replace operation does not apply: index {idx} "
                                             "out of bounds")
                        parent[idx] = copy.deepcopy(op["value"])
            else:
                raise PatchError(f"{kind} operation does not apply: doc is missing path: {path}")
        elif kind == "remove":
            parent, last = parent_of()
            try:
                if isinstance(parent, dict):
                    del parent[last]
                else:
                    del parent[int(last)]
            except (KeyError, ValueError, IndexError, TypeError):
                raise PatchError(f"remove operation does not apply: doc is missing path: "
                                 f"\"{path}\"") from None
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src, op.get("from")))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": path, "value": value}])
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


# patchMergeKey of list fields of the built-in types (subset); lists not
# named here are replaced, as with strategic merge patch's default.
SMP_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "ports": "containerPort", "volumeMounts": "mountPath", "volumes": "name",
    "conditions": "type", "containerStatuses": "name", "initContainerStatuses": "name",
    "ownerReferences": "uid", "imagePullSecrets": "name", "hostAliases": "ip",
    "addresses": "type", "taints": "key",
}
SMP_SET_LISTS = {"finalizers"}


def strategic_merge_patch(target, patch, field=None):
    """Strategic merge patch, simplified: objects merge as in a merge patch;
    lists with a known patchMergeKey merge by that key (an item with
    "$patch": "delete" removes its match); `finalizers` merges as a set;
    other lists are replaced; $setElementOrder/$retainKeys directives are
    ignored."""
    if not isinstance(patch, dict):
        if isinstance(patch, list) and isinstance(target, list) and field in SMP_MERGE_KEYS:
            key = SMP_MERGE_KEYS[field]
            out = copy.deepcopy(target)
            for item in patch:
                if not isinstance(item, dict) or key not in item:
                    out.append(copy.deepcopy(item))
                    continue
                idx = next((i for i, t in enumerate(out)
                            if isinstance(t, dict) and t.get(key) == item[key]), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        out.pop(idx)
                elif idx is None:
                    out.append({k: v for k, v in copy.deepcopy(item).items()
                                if not k.startswith("$")})
                else:
                    out[idx] = strategic_merge_patch(out[idx], item)
            return out
        if isinstance(patch, list) and isinstance(target, list) and field in SMP_SET_LISTS:
            return target + [p for p in patch if p not in target]
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = strategic_merge_patch(out.get(k), v, k)
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/") and isinstance(out.get(k.split("/", 1)[1]),
                                                                    list):
            name = k.split("/", 1)[1]
            out[name] = [x for x in out[name] if x not in v]
    return out


# ---------------------------------------------------------------- CEL (subset)

class CelUnsupported(Exception):
    """An expression outside the subset: the rule is skipped."""


class CelError(Exception):
    """A runtime error of a rule (e.g. no such key): the rule fails."""


_CEL_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.\d+|\d+)|
    (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|
    (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]])|
    (?P<id>[A-Za-z_][A-Za-z0-9_]*))""", re.X)


def _cel_tokens(text):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _CEL_TOKEN.match(text, pos)
        if not m:
            raise CelUnsupported(f"cannot parse {text[pos:]!r}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = ("str", bytes(val[1:-1], "utf-8").decode("unicode_escape"))
        elif kind == "num":
            val = ("num", float(val) if "." in val else int(val))
        elif kind == "id":
            val = ("id", val)
        else:
            val = ("op", val)
        out.append(val)
        pos = m.end()
    return out


class _CelParser:
    """Recursive descent over the CEL grammar subset; builds nested tuples."""

    def __init__(self, text):
        self.t = _cel_tokens(text)
        self.i = 0

    def peek(self, *vals):
        if self.i < len(self.t) and self.t[self.i][1] in vals and self.t[self.i][0] in ("op", "id"):
            return self.t[self.i][1]
        return None

    def take(self, val):
        if not self.peek(val):
            raise CelUnsupported(f"expected {val!r}")
        self.i += 1

    def parse(self):
        e = self.expr()
        if self.i != len(self.t):
            raise CelUnsupported(f"unexpected {self.t[self.i]!r}")
        return e

    def expr(self):
        c = self.or_()
        if self.peek("?"):
            self.i += 1
            a = self.expr()
            self.take(":")
            return ("?:", c, a, self.expr())
        return c

    def or_(self):
        e = self.and_()
        while self.peek("||"):
            self.i += 1
            e = ("||", e, self.and_())
        return e

    def and_(self):
        e = self.rel()
        while self.peek("&&"):
            self.i += 1
            e = ("&&", e, self.rel())
        return e

    def rel(self):
        e = self.add()
        while self.peek("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.t[self.i][1]
            self.i += 1
            e = (op, e, self.add())
        return e

    def add(self):
        e = self.mul()
        while self.peek("+", "-"):
            op = self.t[self.i][1]
            self.i += 1
            e = (op, e, self.mul())
        return e

    def mul(self):
        e = self.unary()
        while self.peek("*", "/", "%"):
            op = self.t[self.i][1]
            self.i += 1
            e = (op, e, self.unary())
        return e

    def unary(self):
        if self.peek("!"):
            self.i += 1
            return ("!", self.unary())
        if self.peek("-"):
            self.i += 1
            return ("neg", self.unary())
        return self.member()

    def args(self):
        self.take("(")
        out = []
        while not self.peek(")"):
            out.append(self.expr())
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        return out

    def member(self):
        e = self.primary()
        while True:
            if self.peek("."):
                self.i += 1
                kind, name = self.t[self.i]
                if kind != "id":
                    raise CelUnsupported("field name expected")
                self.i += 1
                if self.peek("("):
                    e = ("call", name, e, self.args())
                else:
                    e = ("sel", e, name)
            elif self.peek("["):
                self.i += 1
                idx = self.expr()
                self.take("]")
                e = ("idx", e, idx)
            else:
                return e

    def primary(self):
        if self.i >= len(self.t):
            raise CelUnsupported("unexpected end")
        kind, val = self.t[self.i]
        if kind in ("num", "str"):
            self.i += 1
            return ("lit", val)
        if kind == "id":
            self.i += 1
            if val in ("true", "false"):
                return ("lit", val == "true")
            if val == "null":
                return ("lit", None)
            if self.peek("("):
                return ("fn", val, self.args())
            return ("var", val)
        if val == "(":
            self.i += 1
            e = self.expr()
            self.take(")")
            return e
        if val == "[":
            self.i += 1
            items = []
            while not self.peek("]"):
                items.append(self.expr())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return ("list", items)
        raise CelUnsupported(f"unexpected {val!r}")


_CEL_MISSING = object()


def _cel_eval(e, env):
    op = e[0]
    if op == "lit":
        return e[1]
    if op == "var":
        if e[1] not in env:
            raise CelUnsupported(f"unknown variable {e[1]}")
        return env[e[1]]
    if op == "list":
        return [_cel_eval(x, env) for x in e[1]]
    if op == "sel":
        obj = _cel_eval(e[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"no such key: {e[2]}")
        if e[2] not in obj:
            raise CelError(f"no such key: {e[2]}")
        return obj[e[2]]
    if op == "idx":
        obj, idx = _cel_eval(e[1], env), _cel_eval(e[2], env)
        try:
            return obj[idx]
        except (KeyError, IndexError, TypeError):
            raise CelError(f"no such key: {idx}") from None
    if op == "?:":
        return _cel_eval(e[2] if _cel_bool(_cel_eval(e[1], env)) else e[3], env)
    if op in ("||", "&&"):
        want = op == "||"
        err = None
        for side in (e[1], e[2]):
            try:
                if _cel_bool(_cel_eval(side, env)) == want:
                    return want
            except CelError as x:
                err = x
        if err:
            raise err
        return not want
    if op == "!":
        return not _cel_bool(_cel_eval(e[1], env))
    if op == "neg":
        return -_cel_eval(e[1], env)
    if op == "fn":
        name, args = e[1], e[2]
        if name == "has":
            if len(args) != 1 or args[0][0] != "sel":
                raise CelUnsupported("has() needs a field selection")
            obj = _cel_eval(args[0][1], env)
            return isinstance(obj, dict) and args[0][2] in obj
        vals = [_cel_eval(a, env) for a in args]
        if name == "size" and len(vals) == 1:
            return len(vals[0])
        if name == "int":
            return int(vals[0])
        if name == "string":
            return vals[0] if isinstance(vals[0], str) else json.dumps(vals[0])
        if name == "double":
            return float(vals[0])
        raise CelUnsupported(f"function {name}")
    if op == "call":
        name, target, args = e[1], e[2], e[3]
        if name in ("all", "exists", "exists_one"):
            if len(args) != 2 or args[0][0] != "var":
                raise CelUnsupported(f"{name}() needs a variable")
            coll = _cel_eval(target, env)
            items = list(coll.keys()) if isinstance(coll, dict) else list(coll)
            results = [_cel_bool(_cel_eval(args[1], dict(env, **{args[0][1]: it})))
                       for it in items]
            if name == "all":
                return all(results)
            if name == "exists":
                return any(results)
            return sum(results) == 1
        obj = _cel_eval(target, env)
        vals = [_cel_eval(a, env) for a in args]
        if name == "startsWith":
            return obj.startswith(vals[0])
        if name == "endsWith":
            return obj.endswith(vals[0])
        if name == "contains":
            return vals[0] in obj
        if name == "matches":
            return re.search(vals[0], obj) is not None
        if name == "size":
            return len(obj)
        raise CelUnsupported(f"method {name}")
    a, b = _cel_eval(e[1], env), _cel_eval(e[2], env)
    try:
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        if op == "in":
            return a in b
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a // b if isinstance(a, int) and isinstance(b, int) else a / b
        if op == "%":
            return a % b
    except (TypeError, ZeroDivisionError) as x:
        raise CelError(str(x)) from None
    raise CelUnsupported(f"operator {op}")


def _cel_bool(v) -> bool:
    if not isinstance(v, bool):
        raise CelError("no such overload")
    return v


_CEL_CACHE = {}


def cel_check(rule: str, value, old=_CEL_MISSING):
    """Evaluate one x-kubernetes-validations rule: True/False, or raises
    CelError (a failing rule) or CelUnsupported (skip it)."""
    ast = _CEL_CACHE.get(rule)
    if ast is None:
        ast = _CEL_CACHE[rule] = _CelParser(rule).parse()
    env = {"self": value}
    if old is not _CEL_MISSING:
        env["oldSelf"] = old
    return _cel_bool(_cel_eval(ast, env))


def _uses_old_self(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


BLOCKING = {"NotSupported", "Required", "TooLong", "TooMany", "TypeInvalid"}


def validate_cel(value, schema, path: str, errs: list, old=_CEL_MISSING, root=False,
                 skipped=None) -> None:
    """x-kubernetes-validations rules of a schema tree (a CEL subset: self,
    oldSelf, literals, lists, field selection, [], has(), size(), int(),
    string(), ==, !=, <, <=, >, >=, in, +, -, *, /, %, !, &&, ||, ?:,
    startsWith, endsWith, contains, matches, all, exists, exists_one).
    Transition rules (oldSelf) run only where an old value exists.  A rule
    outside the subset is skipped (its text appended to `skipped`)."""
    if not isinstance(schema, dict) or value is None:
        return
    for r in schema.get("x-kubernetes-validations") or []:
        rule = r.get("rule", "")
        if _uses_old_self(rule) and old is _CEL_MISSING:
            continue
        try:
            ok = cel_check(rule, value, old)
            detail = r.get("message") or f"failed rule: {rule}"
        except CelUnsupported:
            if skipped is not None:
                skipped.append(rule)
            continue
        except CelError as e:
            ok, detail = False, f"{e} evaluating rule: {rule}"
        if not ok:
            p = path + (r.get("fieldPath") or "") if r.get("fieldPath") else path
            etype = {"FieldValueForbidden": "Forbidden", "FieldValueRequired": "Required",
                     "FieldValueDuplicate": "Duplicate"}.get(r.get("reason"), "Invalid")
            if etype in ("Forbidden", "Required"):
                errs.append(FieldError(etype, p or "<nil>", detail=detail))
            else:
                errs.append(FieldError(etype, p or "<nil>",
                                       schema.get("type") or "object", detail))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            if sub is None or ((root or _is_embedded(schema)) and k == "metadata"):
                continue
            o = old.get(k, _CEL_MISSING) if isinstance(old, dict) else _CEL_MISSING
            validate_cel(v, sub, child(path, k), errs, o, skipped=skipped)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        old_by_key = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            old_by_key = {json.dumps([o.get(k) for k in keys]): o for o in old
                          if isinstance(o, dict)}
        for i, v in enumerate(value):
            o = old_by_key.get(json.dumps([v.get(k) for k in keys]), _CEL_MISSING) \
                if old_by_key and isinstance(v, dict) else _CEL_MISSING
            validate_cel(v, schema["items"], f"{path}[{i}]", errs, o, skipped=skipped)
