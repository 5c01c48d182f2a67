"""TOSCA's scalar-unit values ("2 GiB", "30 s", "2 GHz", "10 Mbps") in their base unit: what the
parser checks blueprints with and what executors size jobs with, kept below both."""

from __future__ import annotations

import re

# Units and their factor to the base unit (spec 3.3.6). Size, time and frequency units are
# matched case-insensitively; bitrate distinguishes bits (b) from bytes (B).
UNITS: dict[str, dict[str, float]] = {
    "scalar-unit.size": {
        "b": 1,
        "kb": 1e3,
        "kib": 1024,
        "mb": 1e6,
        "mib": 1024**2,
        "gb": 1e9,
        "gib": 1024**3,
        "tb": 1e12,
        "tib": 1024**4,
    },
    "scalar-unit.time": {
        "d": 86400,
        "h": 3600,
        "m": 60,
        "s": 1,
        "ms": 1e-3,
        "us": 1e-6,
        "ns": 1e-9,
    },
    "scalar-unit.frequency": {"hz": 1, "khz": 1e3, "mhz": 1e6, "ghz": 1e9},
    "scalar-unit.bitrate": {
        "bps": 1,
        "Kbps": 1e3,
        "Kibps": 1024,
        "Mbps": 1e6,
        "Mibps": 1024**2,
        "Gbps": 1e9,
        "Gibps": 1024**3,
        "Tbps": 1e12,
        "Tibps": 1024**4,
        "Bps": 8,
        "KBps": 8e3,
        "KiBps": 8 * 1024,
        "MBps": 8e6,
        "MiBps": 8 * 1024**2,
        "GBps": 8e9,
        "GiBps": 8 * 1024**3,
        "TBps": 8e12,
        "TiBps": 8 * 1024**4,
    },
}
UNIT_NAMES = {
    "scalar-unit.size": "B, kB, KiB, MB, MiB, GB, GiB, TB, TiB",
    "scalar-unit.time": "d, h, m, s, ms, us, ns",
    "scalar-unit.frequency": "Hz, kHz, MHz, GHz",
    "scalar-unit.bitrate": "bps, Kbps, Kibps, Mbps, Mibps, Gbps, Gibps, Tbps, Tibps "
    "(Bps... for bytes)",
}
_SCALAR = re.compile(
    r"\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*\Z"
)
SCALAR_KINDS = frozenset(UNITS)


class UnitError(ValueError):
    """A text is not a scalar-unit value of its kind; the message says why."""


def to_base_unit(kind: str, text: str) -> float:
    """``text`` ("2 GiB") in ``kind``'s base unit (bytes, seconds, Hz, bits per second)."""
    match = _SCALAR.match(text)
    if not match:
        raise UnitError(f"'{text}' is not a {kind} (a number, a space, a unit)")
    number, unit = match.groups()
    units = UNITS[kind]
    if kind == "scalar-unit.bitrate":
        factor = units.get(unit)
        if factor is None:
            lowered = {k.lower(): v for k, v in units.items() if k[0] != "B" and "B" not in k}
            factor = lowered.get(unit.lower()) if "B" not in unit else None
    else:
        factor = units.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown unit '{unit}' for {kind}; valid: {UNIT_NAMES[kind]}")
    return float(number) * factor
