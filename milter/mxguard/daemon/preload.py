"""Load, before the privilege drop, everything mxguard may import or read later.

Started as root from a clone under /root (mode 0700), or with an interpreter installed there,
the milter user cannot read the virtualenv or Python's own library once privileges are
dropped. Whatever is imported on first use then fails in the middle of a transaction:
dnspython falls back to ``GenericRdata`` for a record type whose module it cannot import,
and Python's codec search reports "unknown encoding: punycode". So the modules mxguard, its
libraries and the codec search may import later are imported here, as root, and package data
is read here; the self-test (``selftest``) then proves that a transaction works as the
milter user.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import warnings
from collections.abc import Iterable

log = logging.getLogger("mxguard")

# Packages imported whole, submodule by submodule: each of these imports some modules only
# on first use (dnspython one module per record type, email its header parsers, encodings
# one module per charset a header may name, idna its UTS 46 table).
PACKAGES = (
    "mxguard",
    "dns",
    "dkim",
    "authres",
    "email",
    "encodings",
    "idna",
    "nacl",
    "publicsuffixlist",
    "cryptography.hazmat.primitives",
    "prometheus_client",
    "redis",
    "concurrent.futures",
    "importlib.resources",
    "logging",
    "sqlite3",
    "json",
    "http",
)
# Not used by mxguard, and noisy or harmful to import: a package's __main__ runs its command
# line; dnspython's DNSSEC and async parts warn about deprecated algorithms or need extras.
SKIPPED = (
    "__main__",
    "dns.dnssec",
    "dns.asyncquery",
    "dns.asyncresolver",
    "dns.quic",
    "dns.win32util",
    "dns._asyncio_backend",
    "dns._trio_backend",
    "redis.asyncio",
)
# Single modules imported on first use by the standard library itself.
MODULES = (
    "spf",
    "Milter",
    "_strptime",
    "ssl",
    "hmac",
    "secrets",
    "unicodedata",
    "wsgiref.simple_server",
)


def preload() -> list[str]:
    """Import every module of PACKAGES and MODULES and read package data; the names that
    could not be imported (optional parts, other platforms) are returned."""
    failed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of modules mxguard never calls
        for name in _module_names(PACKAGES, MODULES):
            try:
                importlib.import_module(name)
            except Exception:  # an optional module (an extra not installed, another OS)
                failed.append(name)
    _read_data()
    log.debug("preloaded every module mxguard may need; not importable here: %s", failed)
    return failed


def _module_names(packages: Iterable[str], modules: Iterable[str]) -> list[str]:
    names = list(modules)
    for package in packages:
        try:
            root = importlib.import_module(package)
        except Exception:
            names.append(package)  # reported as not importable by the caller
            continue
        names.append(package)
        path = getattr(root, "__path__", None)
        if path is None:
            continue
        names.extend(info.name for info in pkgutil.walk_packages(path, package + ".", _skip))
    return [name for name in names if not _skipped(name)]


def _skipped(name: str) -> bool:
    return any(
        name == skip or name.startswith(skip + ".") or name.endswith("." + skip) for skip in SKIPPED
    )


def _skip(name: str) -> None:
    """walk_packages calls this for a package it cannot import: leave it to the caller."""


def _read_data() -> None:
    """Read the package data that checks would otherwise read on first use or on reload."""
    from mxguard.checks import rdns
    from mxguard.mail.dmarc import organizational_domain

    rdns.shipped_patterns()
    organizational_domain("mail.example.org")  # parses the Public Suffix List once
    "bücher.example".encode("idna")  # the codec registry's lookup of idna and punycode
    "bücher".encode("punycode")
