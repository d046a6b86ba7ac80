"""SunSpec register maps generated from the official model definitions (``pysunspec2``).

The SunSpec Alliance publishes every information model as JSON (``sunspec2/models/json/
model_NNN.json`` in the ``pysunspec2`` package, from github.com/sunspec/models). This module
turns the models the profiles use into one checked-in file, :data:`MODELS_FILE`
(``sunspec_models.json``): per model its length and, per point, its offset in the model's data
(the register after ID and L is offset 0), type, size, scale-factor point, units and access.

Profiles then name a point instead of typing its address (``{model: 103, point: W}``, see
:func:`modbus_gateway.profiles.parse_profile`), and the simulator lays models out with their
official lengths.

Why a checked-in file rather than reading ``pysunspec2`` at load time: the gateway runs on
small edge boxes and needs only these few kilobytes, not the package; an upgrade of the
definitions shows as a reviewable diff of register offsets; and
``tests/modbus_gateway/test_sunspec_models.py`` regenerates the file from the installed
package and fails when it differs. Regenerate with ``python -m modbus_gateway.sunspec_models``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

MODELS_FILE = Path(__file__).parent / "sunspec_models.json"

#: The models generated: common, inverters (integer+SF and float), nameplate, settings,
#: status, controls, storage, meters, MPPT, DER (701-704) and battery.
MODEL_IDS = (
    1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160,
    201, 202, 203, 204, 211, 212, 213, 701, 702, 703, 704, 802,
)  # fmt: skip

#: SunSpec point types -> profile register types (enums, bitfields, counters and pads are
#: unsigned integers of the same size; SunSpec "not implemented" values are the same).
TYPE_MAP = {
    "int16": "int16",
    "uint16": "uint16",
    "count": "uint16",
    "acc16": "uint16",
    "enum16": "uint16",
    "bitfield16": "uint16",
    "pad": "uint16",
    "sunssf": "sunssf",
    "int32": "int32",
    "uint32": "uint32",
    "acc32": "uint32",
    "enum32": "uint32",
    "bitfield32": "uint32",
    "ipaddr": "uint32",
    "float32": "float32",
    "int64": "int64",
    "uint64": "uint64",
    "acc64": "uint64",
    "float64": "float64",
    "string": "string",
    "eui48": "string",
    "ipv6addr": "string",
}


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a model: offset in the model's data, profile type, size in registers."""

    offset: int
    type: str
    size: int
    sf: str | None = None
    units: str = ""
    access: str = "R"


@dataclass(frozen=True, slots=True)
class Model:
    """A model: id, name, fixed length (data registers after ID and L), points by name.

    ``repeat_length`` is the length of one repeating block (model 160's modules); those
    blocks' points are not generated (``length`` is the fixed part only).
    """

    model_id: int
    name: str
    length: int
    points: dict[str, Point]
    repeat_length: int = 0


def _json_dir() -> Path:
    import sunspec2  # the official definitions; only needed to generate

    return Path(sunspec2.__file__).parent / "models" / "json"


def _flatten(group: dict, prefix: str, offset: int, out: dict[str, dict]) -> int:
    """Points of a group and its fixed (non-repeating) subgroups; returns the next offset."""
    for p in group["points"]:
        if prefix == "" and p["name"] in ("ID", "L"):
            continue
        if p["type"] not in TYPE_MAP:
            raise ValueError(f"point {prefix}{p['name']}: unknown SunSpec type {p['type']!r}")
        entry: dict = {"offset": offset, "type": TYPE_MAP[p["type"]], "size": int(p["size"])}
        if "sf" in p and isinstance(p["sf"], str):
            entry["sf"] = p["sf"]
        if p.get("units"):
            entry["units"] = p["units"]
        if p.get("access") == "RW":
            entry["access"] = "RW"
        out[prefix + p["name"]] = entry
        offset += int(p["size"])
    for sub in group.get("groups", []):
        if "count" in sub and sub["count"] != 1:
            continue  # repeating block: handled by the caller
        offset = _flatten(sub, f"{prefix}{sub['name']}.", offset, out)
    return offset


def _group_length(group: dict) -> int:
    n = sum(int(p["size"]) for p in group["points"])
    return n + sum(_group_length(s) for s in group.get("groups", []))


def generate(json_dir: Path | None = None) -> dict:
    """The generated document (what :data:`MODELS_FILE` holds) from the JSON definitions."""
    json_dir = json_dir or _json_dir()
    models = {}
    for mid in MODEL_IDS:
        doc = json.loads((json_dir / f"model_{mid}.json").read_text(encoding="utf-8"))
        if doc["id"] != mid:
            raise ValueError(f"model_{mid}.json holds model {doc['id']}")
        group = doc["group"]
        points: dict[str, dict] = {}
        end = _flatten(group, "", 0, points)
        repeat = [s for s in group.get("groups", []) if "count" in s and s["count"] != 1]
        models[str(mid)] = {
            "name": group["name"],
            "length": end,
            "repeat_length": sum(_group_length(s) for s in repeat),
            "points": points,
        }
    try:
        version = metadata.version("pysunspec2")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        version = "unknown"
    return {
        "generated_by": "python -m modbus_gateway.sunspec_models",
        "source": f"pysunspec2 {version}, sunspec2/models/json/model_NNN.json",
        "models": models,
    }


def render(doc: dict) -> str:
    """The file text: one model per block, one point per line (diffs stay readable)."""
    lines = ["{"]
    lines.append(f'  "generated_by": {json.dumps(doc["generated_by"])},')
    lines.append(f'  "source": {json.dumps(doc["source"])},')
    lines.append('  "models": {')
    items = list(doc["models"].items())
    for i, (mid, m) in enumerate(items):
        lines.append(f"    {json.dumps(mid)}: {{")
        lines.append(f'      "name": {json.dumps(m["name"])},')
        lines.append(f'      "length": {m["length"]},')
        lines.append(f'      "repeat_length": {m["repeat_length"]},')
        lines.append('      "points": {')
        pts = list(m["points"].items())
        for j, (name, p) in enumerate(pts):
            comma = "," if j < len(pts) - 1 else ""
            lines.append(f"        {json.dumps(name)}: {json.dumps(p, sort_keys=True)}{comma}")
        lines.append("      }")
        lines.append("    }" + ("," if i < len(items) - 1 else ""))
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


@cache
def models() -> dict[int, Model]:
    """The checked-in models by id."""
    doc = json.loads(MODELS_FILE.read_text(encoding="utf-8"))
    out = {}
    for mid, m in doc["models"].items():
        pts = {n: Point(**p) for n, p in m["points"].items()}
        out[int(mid)] = Model(int(mid), m["name"], m["length"], pts, m["repeat_length"])
    return out


def point(model_id: int, name: str) -> Point:
    """A point of a model; raises KeyError naming what is missing."""
    ms = models()
    if model_id not in ms:
        raise KeyError(f"SunSpec model {model_id} is not generated (known: {sorted(ms)})")
    m = ms[model_id]
    if name not in m.points:
        raise KeyError(f"SunSpec model {model_id} ({m.name}) has no point {name!r}")
    return m.points[name]


def main(argv: list[str] | None = None) -> int:
    """Write :data:`MODELS_FILE` (``--check``: exit 1 if it differs from a fresh generation)."""
    args = sys.argv[1:] if argv is None else argv
    text = render(generate())
    if "--check" in args:
        same = MODELS_FILE.read_text(encoding="utf-8") == text
        print(f"{MODELS_FILE.name}: {'up to date' if same else 'differs; regenerate'}")
        return 0 if same else 1
    MODELS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {MODELS_FILE} ({len(MODEL_IDS)} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
