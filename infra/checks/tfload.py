"""Shared helpers of the infra checks: load every .tf file of a folder with python-hcl2 and walk
its resources, data sources, locals and variables. python-hcl2 keeps HCL's quotes (a string
attribute is '"text"', an expression is '${expr}', a quoted key is '"key"'), so values go
through `unquote` / `literal` before use."""
import pathlib
import re

import hcl2


def unquote(key):
    """'"name"' -> 'name' (block labels, object keys); anything else unchanged."""
    if isinstance(key, str) and len(key) >= 2 and key[0] == key[-1] == '"':
        return key[1:-1]
    return key


def literal(value):
    """The string a plain HCL string literal holds, or None for an expression or non-string.
    '"abc"' -> 'abc'; '"${x}/y"' -> None; '${x}' -> None."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return None if "${" in inner else inner
    return None


def is_block(value):
    return isinstance(value, list) and value and all(
        isinstance(b, dict) and b.get("__is_block__") for b in value)


class Module:
    """The .tf files of one folder (a Terraform root module), parsed."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.files = sorted(self.folder.glob("*.tf"))
        self.docs = {}
        self.text = {}
        for f in self.files:
            self.text[f] = f.read_text()
            try:
                self.docs[f] = hcl2.loads(self.text[f])
            except Exception as e:  # python-hcl2 raises lark errors with the position
                raise SystemExit(f"ERROR {f}: cannot parse: {e}")

    def blocks(self, kind):
        """(file, type, name, body) of every `resource` or `data` block."""
        for f, doc in self.docs.items():
            for item in doc.get(kind, []):
                for rtype, named in item.items():
                    if rtype.startswith("__"):
                        continue
                    for rname, body in named.items():
                        if rname.startswith("__"):
                            continue
                        yield f, unquote(rtype), unquote(rname), body

    def resources(self, rtype=None):
        return [r for r in self.blocks("resource") if rtype is None or r[1] == rtype]

    def locals(self):
        """{name: (file, raw value)} of every `locals` entry."""
        out = {}
        for f, doc in self.docs.items():
            for block in doc.get("locals", []):
                for k, v in block.items():
                    if not k.startswith("__"):
                        out[k] = (f, v)
        return out

    def variables(self):
        """{name: (file, body)} of every `variable` block."""
        out = {}
        for f, doc in self.docs.items():
            for item in doc.get("variable", []):
                for name, body in item.items():
                    if not name.startswith("__"):
                        out[unquote(name)] = (f, body)
        return out

    def line_of(self, f, *labels):
        """1-based line of the block header `<kind> "<label>" "<label>"` in f (0 if not found)."""
        pattern = r"\s+".join(re.escape(f'"{label}"') for label in labels)
        m = re.search(pattern, self.text[f])
        return self.text[f].count("\n", 0, m.start()) + 1 if m else 0

    def where(self, f, *labels):
        line = self.line_of(f, *labels)
        return f"{f.name}:{line}" if line else f.name
