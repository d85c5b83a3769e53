"""display_url: only scheme://host[:port] of an RPC URL is ever shown; providers put API
keys in the path or the query, and user info is a password."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.core.logs import display_url

_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
_HOSTS = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _SAFE.filter(lambda s: s[0].isalnum()), st.just("io")),
    st.just("127.0.0.1"),
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://starknet-mainnet.infura.io/v3/0123abcd", "https://starknet-mainnet.infura.io"),
        ("https://rpc.example.io/starknet?apikey=SECRET", "https://rpc.example.io"),
        ("http://user:password@127.0.0.1:5050/rpc", "http://127.0.0.1:5050"),
        ("HTTPS://Node.Example.IO:8443/", "https://node.example.io:8443"),
        ("http://[::1]:9545/v0_8", "http://[::1]:9545"),
        ("wss://ws.example.io/ws/KEY", "wss://ws.example.io"),
    ],
)
def test_only_scheme_host_and_port_are_shown(url: str, shown: str) -> None:
    assert display_url(url) == shown


@pytest.mark.parametrize("url", ["", "localhost:7171", "no url at all", "http://h:99999/x", "//h"])
def test_what_is_not_a_url_is_shown_as_such(url: str) -> None:
    assert display_url(url) == "<invalid URL>"


@given(
    scheme=st.sampled_from(["http", "https", "ws", "wss"]),
    host=_HOSTS,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    user=st.one_of(st.none(), _SAFE),
    path=_SAFE,
    query=_SAFE,
)
def test_the_secret_parts_never_show(
    scheme: str, host: str, port: int | None, user: str | None, path: str, query: str
) -> None:
    netloc = ("" if user is None else f"{user}:pw{user}@") + host
    netloc += "" if port is None else f":{port}"
    url = f"{scheme}://{netloc}/KEY{path}?apikey=Q{query}#F{query}"
    expected = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    assert display_url(url) == expected
