"""Generate the Python modules of the DNA v2 protocol (keeper/stream/dna_proto/).

The .proto files next to them are the keeper's own copy of Apibara DNA v2's wire
definitions (``dna.v2.stream``, ``starknet.v2``). The generated ``*_pb2.py`` /
``*_pb2_grpc.py`` are committed, so running the keeper needs only protobuf and grpcio.
After editing a .proto run (grpcio-tools 1.62.x: its protoc 25.x emits code for the
protobuf 4.25 runtime that requirements.lock pins)::

    .venv/bin/pip install 'grpcio-tools==1.62.3'
    .venv/bin/python scripts/gen_dna_protos.py          # rewrite the modules
    .venv/bin/python scripts/gen_dna_protos.py --check  # exit 1 if they are stale

tests/stream/test_dna_protos.py runs the check (skipped without grpcio-tools).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("keeper/stream/dna_proto")
PROTOS = (
    PROTO_DIR / "starknet/v2/common.proto",
    PROTO_DIR / "starknet/v2/filter.proto",
    PROTO_DIR / "starknet/v2/data.proto",
    PROTO_DIR / "dna/v2/stream.proto",
)
SERVICES = (PROTO_DIR / "dna/v2/stream.proto",)


def generated_names() -> list[Path]:
    """The generated modules, relative to the repository root."""
    names = [p.with_name(p.stem + "_pb2.py") for p in PROTOS]
    names += [p.with_name(p.stem + "_pb2_grpc.py") for p in SERVICES]
    return names


def generate(out_dir: Path) -> None:
    """Run protoc (grpcio-tools) over the .proto files, writing modules under out_dir."""
    import grpc_tools  # a generation tool only: never imported by the keeper
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    base = ["protoc", f"-I{ROOT}", f"-I{well_known}", f"--python_out={out_dir}"]
    for proto in PROTOS:
        args = [*base, str(ROOT / proto)]
        if proto in SERVICES:
            args.insert(-1, f"--grpc_python_out={out_dir}")
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def stale(out_dir: Path) -> list[str]:
    """Committed modules that differ from a fresh generation into out_dir."""
    return [
        str(name)
        for name in generated_names()
        if not (ROOT / name).is_file() or not filecmp.cmp(out_dir / name, ROOT / name, False)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a module is stale")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            outdated = stale(Path(tmp))
        for name in outdated:
            print(f"stale: {name} (run scripts/gen_dna_protos.py)", file=sys.stderr)
        return 1 if outdated else 0
    generate(ROOT)
    for name in generated_names():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
