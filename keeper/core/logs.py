"""Logging: structlog everywhere, one line per event, secrets never printed.

- JSON lines when stderr is not a terminal (journald keeps them as fields-in-a-line);
  a human console renderer on a terminal. Logs go to stderr: stdout belongs to the
  commands' own output (``trace`` and ``prove`` print JSON there).
- ``redact_secrets`` runs last, after exceptions are formatted, and replaces every
  configured secret value wherever it appears: in the message, any field, any nested
  structure, any traceback text. Library loggers (stdlib ``logging``: httpx, grpc…) go
  through the same chain.
- ``bind_job`` binds context (job id, epoch…) for one unit of work via contextvars.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
# Config refuses secrets shorter than this: masking a 2-character "secret" would garble
# every log line, and such a secret protects nothing anyway.
MIN_SECRET_LEN = 8


class SecretRedactor:
    """A structlog processor that masks known secret values anywhere in an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        values = {s for s in secrets if s}
        self._secrets = tuple(sorted(values, key=len, reverse=True))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, bytes | bytearray):
            return self._scrub(bytes(value).decode("utf-8", "backslashreplace"))
        if isinstance(value, Mapping):
            return {self._scrub(str(k)): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else would be rendered with repr/str later: scrub that text now.
        return self._scrub(repr(value) if not isinstance(value, Exception) else str(value))

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if not self._secrets:
            return event_dict
        return {key: self._scrub(val) for key, val in event_dict.items()}


redact_secrets = SecretRedactor()


def display_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, for messages and logs: RPC providers put API keys
    in the path or the query (``/v3/KEY``, ``?apikey=``), and user info is a password."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port is None else f":{port}")


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def hide_urls(text: str) -> str:
    """``text`` (e.g. a library's error message) with every URL in it cut down to
    ``display_url``: errors quote the URL they were given, or a redirect's."""
    return _URL.sub(lambda match: display_url(match.group()), text)

LogFormat = Literal["auto", "json", "console"]


def configure_logging(
    *,
    level: str = "info",
    fmt: LogFormat = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (SIGHUP reload)."""
    out = stream if stream is not None else sys.stderr
    redact_secrets.set_secrets(secrets)
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        redact_secrets,
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the stdlib: send them through the same processors.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))  # library DEBUG is noise (and may hold URLs)
    # One line per HTTP request (every RPC poll) would drown the keeper's own lines.
    for chatty in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial)


@contextmanager
def bind_job(**context: Any) -> Iterator[None]:
    """Bind ``context`` (job_id, epoch, prover…) to every log line inside the block."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
