"""Live processes by name, from /proc (what a test checks after killing a keeper)."""

from __future__ import annotations

from pathlib import Path


def live_processes(name: str, *, argument_contains: str | None = None) -> dict[int, int]:
    """pid -> parent pid of live processes whose program ends with ``name`` (argv[0], or
    argv[1] for a script run by its interpreter) and, when given, with an argument
    containing ``argument_contains``. Zombies are dead."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == "Z" or not any(a.endswith(name.encode()) for a in argv[:2]):
            continue
        if argument_contains is None or any(argument_contains.encode() in a for a in argv):
            found[int(entry.name)] = int(stat[1])
    return found
