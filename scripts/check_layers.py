#!/usr/bin/env python3
"""Fails when an #include crosses otad's layers the wrong way.

Layers (docs/architecture.md): cli -> net -> api -> domain -> storage, with
config, util and platform as leaves below them. A file under src/<layer>/ or
include/otad/<layer>/ may include otad headers of its own layer and of the
layers listed for it below, and nothing else: not a layer above it, and not a
layer it should reach only through its neighbour (api never includes storage).
Third-party headers that belong to one layer (SQLite to storage, Boost.URL,
Asio and Beast to net) may not appear anywhere else.

usage: scripts/check_layers.py [--root DIR]    exit 0 when clean, 1 with a list
"""

import argparse
import pathlib
import re
import sys

# Which otad layers each layer may include (its own is always allowed).
ALLOWED = {
    "platform": set(),
    "util": {"platform"},
    "config": {"util", "platform"},
    "storage": {"util", "platform"},
    "domain": {"storage", "util", "platform"},
    "api": {"domain", "config", "util", "platform"},
    "net": {"api", "config", "util", "platform"},
    "cli": {"net", "api", "domain", "storage", "config", "util", "platform"},
}

# Third-party headers owned by one layer: (pattern, owner layer, name).
OWNED_THIRD_PARTY = [
    (re.compile(r"^(SQLiteCpp/|sqlite3\.h$)"), "storage", "SQLite"),
    (re.compile(r"^boost/url"), "net", "Boost.URL"),
    (re.compile(r"^boost/(asio|beast)"), "net", "Asio/Beast"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')


def layer_of(path: pathlib.Path, root: pathlib.Path):
    parts = path.relative_to(root).parts
    if len(parts) >= 2 and parts[0] == "src" and parts[1] in ALLOWED:
        return parts[1]
    if len(parts) >= 3 and parts[0] == "include" and parts[1] == "otad" and parts[2] in ALLOWED:
        return parts[2]
    return None


def violations(root: pathlib.Path):
    found = []
    for path in sorted(list(root.glob("src/**/*")) + list(root.glob("include/**/*"))):
        if path.suffix not in (".cpp", ".hpp", ".h", ".in") or not path.is_file():
            continue
        layer = layer_of(path, root)
        if layer is None:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            header = m.group(1)
            where = f"{path.relative_to(root)}:{number}"
            if header.startswith("otad/"):
                target = header.split("/")[1]
                if target in ALLOWED and target != layer and target not in ALLOWED[layer]:
                    found.append(f"{where}: layer '{layer}' includes {header} (layer '{target}')")
                continue
            for pattern, owner, name in OWNED_THIRD_PARTY:
                if pattern.search(header) and layer != owner:
                    found.append(f"{where}: layer '{layer}' includes {header} ({name} belongs to '{owner}')")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    args = parser.parse_args()
    found = violations(args.root.resolve())
    for v in found:
        print(v)
    if found:
        print(f"check_layers: {len(found)} include(s) cross the layers the wrong way", file=sys.stderr)
        return 1
    print("check_layers: every include follows the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
