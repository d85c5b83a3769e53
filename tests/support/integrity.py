"""Whether Integrity's compiled classes are here for the tests that deploy them."""

from __future__ import annotations

from keeper.devnet.integrity import CLASSES_ENV, DEFAULT_CLASSES_DIR, classes_dir


def classes_skip_reason() -> str | None:
    """None when Integrity's compiled classes can be used, else why a test skips."""
    try:
        found = classes_dir()
    except Exception as exc:  # a broken folder: the skip says what is wrong with it
        return f"Integrity's compiled classes are unusable: {exc}"
    if found is None:
        return (
            f"Integrity's compiled classes are absent ({DEFAULT_CLASSES_DIR} or "
            f"{CLASSES_ENV}): no Integrity FactRegistry to deploy"
        )
    return None
