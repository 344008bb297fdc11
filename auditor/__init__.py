"""The training-run auditor: probe a short stretch of training and say what will go wrong, and how to fix it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("training-run-auditor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

from .errors import AuditError  # noqa: E402

__all__ = ["audit", "AuditError", "Report", "__version__"]


def __getattr__(name: str):
    # torch and the report's libraries load on first use: `audit --help` and `audit rules` never need them.
    if name == "audit":
        from .api import audit
        return audit
    if name == "Report":
        from .report import Report
        return Report
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")
