"""Settings from `[tool.auditor]` in the user's pyproject.toml, overridden by the command line."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AuditError

DEFAULT_STEPS = 100
# Activation, weight and update statistics are taken every this many steps (loss and gradient norms every
# step), as Cockpit's track schedules do: on a sub-millisecond step each measured step costs about 1.5
# extra steps (the traced forward, the statistics and the own-batch re-score), and the rules read medians
# over windows, which the 9 samples of a 100-step probe (steps 0, 13, ..., 91, 99; 5 in the later half)
# estimate well. Odd, so a period-2 cycle is seen in both phases. bench/bench_probe.py measures the trade:
# on the makemore MLP (0.55 ms a step) 11 gives 1.29-1.30x, 13 gives 1.27-1.28x, and the unavoidable part
# (gradient norms every step, the measured first and last steps, the read-back) alone is 1.17-1.18x.
DEFAULT_STATS_EVERY = 13

FORMATS = ("json", "md", "html", "pdf")
FAIL_ON = ("error", "warning", "never")
STRATEGIES = ("ddp", "fsdp")  # how the probe wraps the model under torchrun (auditor/distributed.py)
_KEYS = {"steps", "stats-every", "verify-fixes", "seed", "device", "fail-on", "ignore", "format", "out", "rules",
         "plugins"}


@dataclass
class Settings:
    steps: int = DEFAULT_STEPS
    stats_every: int = DEFAULT_STATS_EVERY
    verify_fixes: bool = True
    seed: int = 0
    device: str | None = None
    fail_on: str = "error"
    ignore: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    out: str = "audit-report"
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)  # rule modules or paths (resolved against pyproject's folder)
    source: str | None = None  # the pyproject.toml these came from


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def parse_formats(value: str | list) -> list[str]:
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    for item in items:
        if item not in FORMATS:
            raise AuditError(f"--format {item!r} is not a report format; choose from {', '.join(FORMATS)}")
    if not items:
        raise AuditError("--format needs at least one of: " + ", ".join(FORMATS))
    return items


def parse_threshold(text: str) -> tuple[str, str, float]:
    """`rule-id.name=value` from --set."""
    key, sep, value = text.partition("=")
    rule, dot, name = key.strip().rpartition(".")
    if not sep or not dot or not rule:
        raise AuditError(f"--set {text!r}: expected RULE.THRESHOLD=VALUE, e.g. update-ratio.high=-1.5")
    try:
        return rule, name, float(value)
    except ValueError:
        raise AuditError(f"--set {text!r}: {value!r} is not a number") from None


def load_settings(start: Path) -> Settings:
    settings = Settings()
    path = find_pyproject(start)
    if path is None:
        return settings
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: not valid TOML ({exc})") from None
    section = data.get("tool", {}).get("auditor")
    if section is None:
        return settings
    unknown = set(section) - _KEYS
    if unknown:
        raise AuditError(f"{path}: unknown key(s) in [tool.auditor]: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(_KEYS))}")
    settings.source = str(path)
    try:
        settings.steps = int(section.get("steps", settings.steps))
        settings.seed = int(section.get("seed", settings.seed))
        settings.stats_every = int(section.get("stats-every", settings.stats_every))
    except (TypeError, ValueError):
        raise AuditError(f"{path}: [tool.auditor] steps, stats-every and seed must be integers") from None
    settings.verify_fixes = section.get("verify-fixes", settings.verify_fixes)
    if not isinstance(settings.verify_fixes, bool):
        raise AuditError(f"{path}: [tool.auditor] verify-fixes must be true or false")
    settings.device = section.get("device", settings.device)
    settings.fail_on = section.get("fail-on", settings.fail_on)
    if settings.fail_on not in FAIL_ON:
        raise AuditError(f"{path}: fail-on = {settings.fail_on!r}; choose from {', '.join(FAIL_ON)}")
    settings.ignore = list(section.get("ignore", []))
    if "format" in section:
        settings.formats = parse_formats(section["format"])
    settings.out = section.get("out", settings.out)
    plugins = section.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise AuditError(f"{path}: [tool.auditor] plugins must be a list of module names or paths")
    settings.plugins = [str((path.parent / p).resolve()) if p.endswith(".py") or "/" in p else p for p in plugins]
    rules = section.get("rules", {})
    for rule, values in rules.items():
        if not isinstance(values, dict):
            raise AuditError(f"{path}: [tool.auditor.rules.{rule}] must be a table of thresholds")
        try:
            settings.thresholds[rule] = {k.replace("-", "_"): float(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise AuditError(f"{path}: thresholds under [tool.auditor.rules.{rule}] must be numbers") from None
    return settings
