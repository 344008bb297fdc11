"""The training-run auditor: probe a short stretch of training and say what will go wrong, and how to fix it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("training-run-auditor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

from .api import audit  # noqa: E402
from .errors import AuditError  # noqa: E402
from .report import Report  # noqa: E402

__all__ = ["audit", "AuditError", "Report", "__version__"]
