"""Linux CPU lists (``0-3,6``), as ``cpu_threads`` entries and ``--cpus`` write them."""

from __future__ import annotations


def cpu_list(spec: str) -> list[int]:
    """The cores of ``spec``, sorted (ValueError when it is not a CPU list)."""
    cores: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {spec!r} (write e.g. 0-3,6)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"not a CPU list: {spec!r} ({part}: a descending range)")
        cores.update(range(first, last + 1))
    if not cores:
        raise ValueError(f"not a CPU list: {spec!r} (no cores)")
    return sorted(cores)
