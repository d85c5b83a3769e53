"""The distribution's error base, and the prover package's hierarchy under it.

Every error carries a stable ``code`` (for logs, the ledger and metrics) and a message
that tells the operator what to do. ``exit_code`` is what the CLI exits with.

``ObsqraError`` lives here because ``prover/`` is the lowest package (it knows nothing
of the keeper); ``keeper.core.errors.KeeperError`` subclasses it too, so one
``except ObsqraError`` catches everything either package raises on purpose.
"""

from __future__ import annotations


class ObsqraError(Exception):
    """Base of every error raised on purpose by ``prover`` or ``keeper``."""

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ProverError(ObsqraError):
    """Base of every error raised by ``prover``."""

    code = "prover_error"


class InputError(ProverError):
    """Bad user-supplied input (inputs JSON, CLI values, files). CLI exit 2."""

    code = "bad_input"
    exit_code = 2


class InfeasibleAllocation(InputError):
    """The governance constraints cannot be met for these inputs: no proof can exist."""

    code = "infeasible_allocation"


class FriParameterError(InputError):
    """An FRI / security parameter combination that Stone or Integrity would reject."""

    code = "bad_fri_parameters"


class CairoRunError(ProverError):
    """The Cairo VM failed on inputs that passed validation (a bug in the program or VM)."""

    code = "cairo_run_failed"
