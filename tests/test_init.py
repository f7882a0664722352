"""The package's entry: `dir(cryptolab)` is the public API, lazily re-exported."""

from __future__ import annotations


def test_dir_of_the_package_lists_the_public_api() -> None:
    import cryptolab

    names = dir(cryptolab)
    public = {"Capture", "CaptureOptions", "CaptureStatus", "CryptolabError", "connect", "settings"}
    assert public <= set(names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    assert all(getattr(cryptolab, n) is not None for n in names)
