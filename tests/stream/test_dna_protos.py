"""The committed DNA v2 modules: current with their .proto files, on the wire names."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from keeper.stream.dna_proto.dna.v2 import stream_pb2, stream_pb2_grpc
from keeper.stream.dna_proto.starknet.v2 import common_pb2, data_pb2, filter_pb2

ROOT = Path(__file__).resolve().parents[2]


def _gen_script() -> object:
    path = ROOT / "scripts" / "gen_dna_protos.py"
    spec = importlib.util.spec_from_file_location("gen_dna_protos", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the modules")
    gen = _gen_script()
    gen.generate(tmp_path)  # type: ignore[attr-defined]
    assert gen.stale(tmp_path) == []  # type: ignore[attr-defined]


def test_wire_names_are_dna_v2s() -> None:
    """What a DNA v2 server (apibara/dna, starkstream) matches on: package, service and
    method names; the descriptor's file names are ours and never sent."""
    service = stream_pb2.DESCRIPTOR.services_by_name["DnaStream"]
    assert service.full_name == "dna.v2.stream.DnaStream"
    assert {m.name for m in service.methods} == {"StreamData", "Status"}
    assert service.methods_by_name["StreamData"].output_type.full_name == (
        "dna.v2.stream.StreamDataResponse"
    )
    assert hasattr(stream_pb2_grpc, "DnaStreamStub")
    assert common_pb2.FieldElement.DESCRIPTOR.full_name == "starknet.v2.FieldElement"
    assert filter_pb2.Filter.DESCRIPTOR.full_name == "starknet.v2.Filter"
    assert data_pb2.Block.DESCRIPTOR.full_name == "starknet.v2.Block"


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (stream_pb2.StreamDataRequest, {"starting_cursor": 1, "finality": 2, "filter": 3,
                                        "heartbeat_interval": 4}),
        (stream_pb2.StreamDataResponse, {"data": 1, "invalidate": 2, "finalize": 3,
                                         "heartbeat": 4, "system_message": 5}),
        (stream_pb2.Data, {"cursor": 1, "end_cursor": 2, "finality": 3, "data": 4,
                           "production": 5}),
        (common_pb2.FieldElement, {"x0": 1, "x1": 2, "x2": 3, "x3": 4}),
        (data_pb2.Event, {"filter_ids": 1, "from_address": 2, "keys": 3, "data": 4,
                          "event_index": 5, "transaction_index": 6, "transaction_hash": 7,
                          "transaction_status": 8, "event_index_in_transaction": 9}),
        (filter_pb2.EventFilter, {"id": 1, "address": 2, "keys": 3, "strict": 4,
                                  "transaction_status": 5, "include_transaction": 6,
                                  "include_receipt": 7, "include_messages": 8,
                                  "include_siblings": 9, "include_transaction_trace": 10}),
    ],
)
def test_the_fields_the_keeper_uses_have_dna_v2s_numbers(
    message: type, fields: dict[str, int]
) -> None:
    numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]
    assert {name: numbers[name] for name in fields} == fields


def test_field_elements_are_fixed64_on_the_wire() -> None:
    # tag (1 << 3 | wire type 1 = 64-bit) then 8 little-endian bytes, per limb
    assert common_pb2.FieldElement(x0=1).SerializeToString() == b"\x09" + (1).to_bytes(8, "little")
