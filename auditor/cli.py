"""`audit model.py --data loader.py`, `audit rules`, `audit explain RULE`.

Exit codes, as linters use them: 0 no finding reaches --fail-on, 1 one does, 2 usage or loading error.
"""

from __future__ import annotations

import json
import sys
import textwrap
import traceback
from pathlib import Path

import click

# Only what `audit --help`, `audit rules` and `audit explain` need is imported here: torch, matplotlib and the
# report's libraries load inside the commands that use them (tests/test_cli.py keeps it so).
from . import __version__, interrupt
from .config import FAIL_ON, STRATEGIES, load_settings, parse_formats, parse_threshold
from .engine import load_rules
from .errors import AuditError, NeverStepped, print_error
from .interrupt import Stopped
from .progress import for_terminal

_COLOURS = {"error": "red", "warning": "yellow", "info": "blue"}


class _DefaultToModel(click.Group):
    """`audit model.py ...` audits a model file; `audit run`, `audit rules`, `audit explain` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToModel, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audit")
def cli():
    """Tell why a network will train badly, and what to change, before a long run.

    \b
    audit model.py --data loader.py     probe a short stretch of training and report
    audit run train.py ARGS             observe your own training script's first steps and report
    audit rules                         list the rule catalogue
    audit explain RULE                  what a rule checks, why, how to fix, sources
    audit diff BASE HEAD                what changed between two audits, as a pull-request comment
    """


@cli.command("model", hidden=True)
@click.argument("model_file", metavar="MODEL.py")
@click.option("--data", "data_file", metavar="LOADER.py", help="File defining train_loader (or loader, or "
              "build_loader()). Omit when MODEL.py defines the loader.")
@click.option("--steps", type=int, help="Training steps to probe. [default: 100]")
@click.option("--stats-every", type=int, help="Take activation, weight and update statistics every N steps; "
              "loss and gradient norms are taken every step. [default: 13]")
@click.option("--seed", type=int, help="Seed for the probe. [default: 0]")
@click.option("--device", help="Run the probe here instead of where the model's parameters live (cpu, cuda:0).")
@click.option("--out", help="Folder for the reports. [default: audit-report]")
@click.option("--format", "formats", help="Comma-separated subset of: json,md,html,pdf. [default: all four]")
@click.option("--fail-on", type=click.Choice(FAIL_ON + ("new-error", "new-warning")),
              help="Lowest severity that makes the exit code 1; new-error and new-warning count only findings "
              "not in --baseline. [default: error]")
@click.option("--baseline", metavar="REPORT", help="A report.json (or its folder) of an earlier audit: write "
              "diff.md beside the reports, comparing this audit with it.")
@click.option("--ignore", multiple=True, metavar="RULE", help="Switch a rule off (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="RULE.NAME=VALUE",
              help="Override a threshold, e.g. --set update-ratio.high=-1.5 (repeatable).")
@click.option("--no-verify-fixes", "no_verify", is_flag=True, default=None,
              help="Skip re-running the probe with each mechanical fix applied.")
@click.option("--tensorboard", "tensorboard_dir", metavar="DIR", help="Also write the probe's loss, gradient norm, "
              "per-layer ratios and activation histograms as TensorBoard event files into DIR.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Stop the audit after this long (a loader that hangs, "
              "a model far slower than expected) and write a partial report of what was measured.")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="Under torchrun: wrap the model in "
              "DistributedDataParallel or FSDP2 (fully_shard) as your job does. [default: model.py's wrap(model, "
              "mesh), else ddp]")
@click.option("--in-place/--copy", "in_place", default=None, help="Train the model itself from a snapshot in host "
              "memory and restore it afterwards, or always train copies. [default: in place when copies would not "
              "fit the device's free memory]")
@click.option("--amp", type=click.Choice(["bf16", "fp16"]), help="Probe under torch.autocast in this precision, fp16 "
              "with a GradScaler (model.py's make_grad_scaler() if it has one). [default: model.py's `amp`, else "
              "float32]")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an internal error.")
def model_cmd(debug, **options):
    """Audit MODEL.py: probe training on a copy of the model and report what is wrong."""
    _exit(lambda: _run(**options), debug, distributed=True)


def _exit(body, debug: bool, distributed: bool = False) -> None:
    """Run a command's body and exit with its code: one line for bad input, never a traceback of the user's."""
    together = False  # whether this rank ended in step with the others (under torchrun)
    try:
        code = body()
        together = True
    except AuditError as error:
        print_error(error)
        code = 2
    except Stopped as stop:  # before anything was measured: there is nothing to report
        click.echo(f"audit: {stop.reason}; nothing had been measured yet, so no report was written", err=True)
        code = stop.exit_code
    except KeyboardInterrupt:
        click.echo("audit: interrupted", err=True)
        code = 130
    except Exception as exc:  # a defect of the auditor itself, not of the user's input
        if debug:
            traceback.print_exc()
        click.echo(f"audit: internal error: {type(exc).__name__}: {exc} (a bug in the auditor; rerun with --debug "
                   "for the traceback and report it)", err=True)
        code = 2
    if distributed:
        _shutdown(code, together)
    sys.exit(code)


def _shutdown(code: int, together: bool) -> None:
    from . import distributed

    distributed.shutdown(code, together)


@cli.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-m", "module", is_flag=True, help="SCRIPT is a module to run as `python -m` does.")
@click.option("--steps", type=int, help="Optimizer steps of the script to observe, then stop it. [default: 100]")
@click.option("--stats-every", type=int, help="Take activation, weight and update statistics every N steps. "
              "[default: 13]")
@click.option("--seed", type=int, help="Seed python, numpy and torch with this before the script runs (a script "
              "that seeds itself keeps its own). [default: 0]")
@click.option("--out", help="Folder for the reports. [default: audit-report]")
@click.option("--format", "formats", help="Comma-separated subset of: json,md,html,pdf. [default: all four]")
@click.option("--fail-on", type=click.Choice(FAIL_ON), help="Lowest severity that makes the exit code 1. "
              "[default: error]")
@click.option("--ignore", multiple=True, metavar="RULE", help="Switch a rule off (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="RULE.NAME=VALUE", help="Override a threshold "
              "(repeatable).")
@click.option("--no-verify-fixes", "no_verify", is_flag=True, default=None,
              help="Skip re-running the script with each mechanical fix applied.")
@click.option("--rerun-writes", is_flag=True, help="Let the auditor run the script again (to prove fixes, for the LR "
              "range test) although its first run wrote files, which a re-run writes again.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an internal error.")
@click.argument("script", metavar="SCRIPT")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[SCRIPT ARGS]...")
def run_script_cmd(debug, **options):
    """Run SCRIPT (your own training script, unchanged) for its first steps, observing its loop, and report
    what is wrong. Everything after SCRIPT is the script's own: `audit run train.py --lr 0.1 --out ckpt`."""
    _exit(lambda: _run_script(**options), debug)


def _run_script(module, steps, stats_every, seed, out, formats, fail_on, ignore, overrides, no_verify, rerun_writes,
                quiet, script, script_args) -> int:
    import os

    from .api import audit_script
    from .probe.script import Script

    target = Script(script, list(script_args), module=module)
    # The auditor's own options written after the script went to the script; where that made it fail before
    # training, the error says so (a script that takes the same option, `--out ckpt`, is left its own).
    ours = {o: getattr(p, "is_flag", False) for p in click.get_current_context().command.params for o in p.opts
            if o.startswith("-")}
    moved, rest, args = [], [], list(script_args)
    while args:
        a = args.pop(0)
        if a.split("=")[0] in ours:
            moved += [a] + ([args.pop(0)] if args and "=" not in a and not ours[a.split("=")[0]] else [])
        else:
            rest.append(a)
    settings = load_settings(Path.cwd())
    steps, stats_every, seed, verify, out, fail_on, formats, ignore, thresholds = _settled(
        settings, steps, stats_every, seed, no_verify, out, fail_on, formats, ignore, overrides)
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun every rank runs the script; rank 0 reports
    progress = for_terminal(f"auditing {Path(script).name}", quiet or not main)
    try:
        try:
            report = audit_script(target, steps=steps, stats_every=stats_every, seed=seed, ignore=ignore,
                                  thresholds=thresholds, plugins=settings.plugins, verify_fixes=verify and main,
                                  progress=progress, rerun_writes=rerun_writes)
        except NeverStepped as exc:
            if moved:
                raise AuditError(f"{exc}. {' '.join(moved)} came after {target.name} and went to it: the auditor's "
                                 f"own options go before the script: audit run {' '.join(moved)} {script} "
                                 f"{' '.join(rest)}".rstrip()) from None
            raise
        if not main:
            return 0
        with interrupt.deferred() as pending:
            written = [r.write(_player_folder(out, r, i), formats, progress) for i, r in enumerate(report.players)]
    finally:
        progress.close()
    blocked = report.evidence.loop.get("not_rerun")
    if blocked:
        click.echo(f"audit: fixes not verified and the LR range test not run: {blocked}", err=True)
    codes = []
    for i, (r, paths) in enumerate(zip(report.players, written, strict=True)):
        if len(report.players) > 1:
            who = r.settings["optimizer"]
            click.echo(click.style(f"optimizer {i + 1} of {len(report.players)}: {who['optimizer']} training "
                                   f"{who['model']}", bold=True))
        codes.append(_conclude(r, target.name, paths, pending, fail_on, quiet, None, None, out))
    return max(codes)


def _player_folder(out, report, index: int) -> Path:
    """The first optimizer's report where every audit writes it; a GAN's other players' in folders beside it."""
    if index == 0:
        return Path(out)
    return Path(out) / f"optimizer-{index + 1}-{report.settings['optimizer']['model']}"


def _settled(settings, steps, stats_every, seed, no_verify, out, fail_on, formats, ignore, overrides) -> tuple:
    """The command line's options over pyproject.toml's [tool.auditor] settings, for both commands."""
    thresholds = {rule: dict(values) for rule, values in settings.thresholds.items()}
    for text in overrides:
        rule, name, value = parse_threshold(text)
        thresholds.setdefault(rule, {})[name] = value
    return (steps if steps is not None else settings.steps,
            stats_every if stats_every is not None else settings.stats_every,
            seed if seed is not None else settings.seed,
            settings.verify_fixes if no_verify is None else not no_verify,
            out or settings.out, fail_on or settings.fail_on,
            parse_formats(formats) if formats else settings.formats,
            list(settings.ignore) + list(ignore), thresholds)


def _run(model_file, data_file, steps, stats_every, seed, device, out, formats, fail_on, baseline, ignore,
         overrides, no_verify, tensorboard_dir, timeout, quiet, strategy, in_place, amp) -> int:
    from . import diff as differ
    from . import distributed
    from .load import load_files

    dist = distributed.from_env()  # before model.py is imported, which may itself ask for the process group
    if dist is None and strategy:
        raise AuditError(f"--strategy {strategy} wraps the model for a distributed run: launch the audit with "
                         "torchrun (torchrun --nproc-per-node N -m auditor model.py --data loader.py)")
    settings = load_settings(Path(model_file).resolve().parent if Path(model_file).exists() else Path.cwd())
    steps, stats_every, seed, verify, out, fail_on, formats, ignore, thresholds = _settled(
        settings, steps, stats_every, seed, no_verify, out, fail_on, formats, ignore, overrides)
    device = device or settings.device

    if fail_on.startswith("new-") and not baseline:
        raise AuditError(f"--fail-on {fail_on} compares with an earlier audit: pass --baseline REPORT too")
    base = differ.load(baseline) if baseline else None  # before the probe, so a wrong path costs nothing
    if timeout is not None and timeout <= 0:
        raise AuditError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    probe = dict(steps=steps, stats_every=stats_every, seed=seed, device=device, ignore=ignore, thresholds=thresholds,
                 plugins=settings.plugins, keep_partial=True, dist=dist, in_place=in_place,
                 amp=amp)
    if dist is not None and not dist.main:
        # Takes part in the replay's collectives; rank 0 alone verifies, reports and decides the exit code.
        from .api import audit_setup

        with interrupt.handled(timeout, hold=True):  # a signal here is acted on with rank 0, not alone
            setup = load_files(model_file, data_file, seed=probe["seed"])
            distributed.choose(dist, strategy, setup.wrap)
            audit_setup(setup, verify_fixes=False, **probe)
            return distributed.broadcast_code(dist, None)
    code = _main_rank(model_file, data_file, probe, verify, out, formats, fail_on, baseline, base, tensorboard_dir,
                      timeout, quiet, strategy)
    return distributed.broadcast_code(dist, code) if dist is not None else code


def _main_rank(model_file, data_file, probe: dict, verify, out, formats, fail_on, baseline, base, tensorboard_dir,
               timeout, quiet, strategy) -> int:
    from . import distributed
    from .api import audit_setup
    from .load import load_files

    dist = probe["dist"]
    progress = for_terminal(f"auditing {Path(model_file).name}", quiet)
    try:
        with interrupt.handled(timeout, hold=dist is not None):
            interrupt.doing(f"importing {model_file}")
            setup = load_files(model_file, data_file, seed=probe["seed"])
            if dist is not None:
                distributed.choose(dist, strategy, setup.wrap)
            report = audit_setup(setup, progress=progress, verify_fixes=verify, **probe)
        # A signal now waits until every report is written whole, then ends the run with its exit code.
        with interrupt.deferred() as pending:
            written = report.write(out, formats, progress)
            if tensorboard_dir:
                from .report import tensorboard

                progress.phase("writing TensorBoard events", 1)
                written.append(tensorboard.write(report, tensorboard_dir))
    finally:
        progress.close()
    return _conclude(report, model_file, written, pending, fail_on, quiet, base, baseline, out)


def _conclude(report, model_file: str, written, pending, fail_on, quiet, base, baseline, out) -> int:
    """The terminal's account of a written report, and the exit code."""
    from . import diff as differ

    if report.partial:
        click.echo(f"audit: partial report: {report.probe.partial_reason} (after {report.probe.steps_run} of "
                   f"{report.probe.steps} steps)", err=True)
    if not quiet and not sys.stderr.isatty():
        verb = "observed" if report.settings.get("mode") == "script" else "probed"
        click.echo(f"{verb} {report.probe.steps_run} steps of {Path(model_file).name} on {report.probe.device} "
                   f"in {report.probe.seconds:.1f} s", err=True)

    _print_causes(report, model_file)
    for f in report.findings:
        where = ", ".join(f.layers[:2]) + (f" (+{len(f.layers) - 2})" if len(f.layers) > 2 else "")
        severity = click.style(f"{f.severity:<7}", fg=_COLOURS[f.severity], bold=True)
        because = f"(from {', '.join(f.explained_by)}) " if f.explained_by else ""
        click.echo(f"{model_file}: {severity} {f.rule:<20} {where + ': ' if where else ''}{because}{f.title}")
        if f.fix_moot:
            click.echo(f"    {f.fix_moot}")
        elif f.explained_by and "after" in (f.verified or {}):
            for line in _verified_lines(f.verified):
                click.echo(f"    {line}")
    counts = report.counts
    if report.findings:
        summary = f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"
    else:
        summary = f"no findings in the {report.probe.steps_run} steps measured" if report.partial else \
            "clean: no findings"
    for reason in report.skipped:
        click.echo(f"audit: {reason}", err=True)
    if report.verify_seconds is not None and any("after" in (f.verified or {}) for f in report.findings):
        click.echo(f"fixes verified in {report.verify_seconds:.1f} s (--no-verify-fixes skips this)", err=True)
    click.echo(f"{summary}. Report{' (partial)' if report.partial else ''}: {', '.join(str(p) for p in written)}")
    if pending:
        return 128 + pending[0]
    if report.partial:
        return report.evidence.stop_code or 2
    if base is not None:
        change = differ.compare(base, json.loads(json.dumps(report.to_dict())))
        path = Path(out) / "diff.md"
        path.write_text(differ.to_markdown(change, fail_on if fail_on.startswith("new-") else "new-error"))
        click.echo(f"against {baseline}: {change.summary()}. Diff: {path}")
        if fail_on.startswith("new-"):
            return 1 if change.failed(fail_on) else 0
    return 0 if report.passed(fail_on) else 1


_TONES = {"good": "green", "flat": "yellow", "bad": "red"}  # a verified fix's outcome (verify.OUTCOMES)


def _print_causes(report, model_file: str) -> None:
    """'What went wrong': each root cause as a paragraph a person can act on, what it explains folded under it."""
    causes = report.causes()
    if not causes:
        return
    order = ", root causes first" if report.counts["error"] + report.counts["warning"] else ""
    click.echo(click.style(report.causes_title, bold=True) + f" ({model_file}{order}):")
    for i, (root, below) in enumerate(causes, 1):
        where = f" at {', '.join(root.layers[:2])}" if root.layers else ""
        since = f", from step {root.onset}" if root.onset else ""
        head = click.style(f"{i}. {root.title}", fg=_COLOURS[root.severity], bold=True)
        click.echo(f"{head} [{root.rule}{where}{since}]")
        for line in textwrap.wrap(root.diagnosis, 100):
            click.echo(f"   {line}")
        fix_text = root.fix.split("\n\n", 1)[0]
        for j, line in enumerate(textwrap.wrap(fix_text, 95)):
            click.echo(f"   {'Fix: ' if j == 0 else '     '}{line}")
        if "after" in (root.verified or {}):
            for line in _verified_lines(root.verified):
                click.echo(f"   {line}")
        if below:
            click.echo(f"   Also explains: {', '.join(dict.fromkeys(f.rule for f in below))}")  # a rule once
    click.echo("")


def _verified_lines(v: dict) -> list[str]:
    """The verified fix, then each alternative fix verified beside it."""
    return [_verified_line(v)] + [f"or: {_verified_line(alt)}" for alt in v.get("alternatives", [])]


def _verified_line(v: dict) -> str:
    from .verify import OUTCOMES

    if "after" not in v:  # an alternative whose copy could not be probed
        return f"{click.style('fix not verified', bold=True)} ({v['fix']}): {v.get('reason', '')}"
    word, tone = OUTCOMES.get(v.get("outcome"), ("fix verified", "good"))
    why = f" ({v['after_reason']})" if v.get("after_reason") else ""
    return (f"{click.style(word, fg=_TONES[tone], bold=True)} ({v['fix']}): {v['metric']} "
            f"{_short(v['before'])} -> {_short(v['after'])}{why}")


def _short(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _catalogue() -> dict:
    """Built-in rules and the plugins that the pyproject.toml above the current folder names."""
    try:
        return load_rules(load_settings(Path.cwd()).plugins)
    except AuditError as error:
        print_error(error)
        sys.exit(2)


@cli.command("rules")
def rules_cmd():
    """List the rule catalogue (plugins marked with where they come from)."""
    for rule_id, rule in _catalogue().items():
        origin = type(rule).__module__
        mark = "" if origin.startswith("auditor.rules.") else f"  [plugin: {origin}]"
        click.echo(f"{rule_id:<22} {rule.summary}{mark}")


@cli.command("explain")
@click.argument("rule_id", metavar="RULE")
def explain_cmd(rule_id):
    """What RULE checks, why it matters, how to fix it, its thresholds and sources."""
    rules = _catalogue()
    if rule_id not in rules:
        print_error(AuditError(f"no rule {rule_id!r}; `audit rules` lists them"))
        sys.exit(2)
    click.echo(rules[rule_id].explain())


@cli.command("diff")
@click.argument("base", metavar="BASE")
@click.argument("head", metavar="HEAD")
@click.option("--out", "out_file", metavar="FILE", help="Write the Markdown here instead of to stdout.")
@click.option("--fail-on", type=click.Choice(("new-error", "new-warning", "never")), default="new-error",
              show_default=True, help="Exit 1 when a finding new in HEAD (or more severe there) reaches this.")
@click.option("--max-chars", type=int, default=None, help="Fold sections past this many characters into a "
              "note (GitHub comments hold at most 65536).")
def diff_cmd(base, head, out_file, fail_on, max_chars):
    """Compare two audits (report.json files or the folders holding them): findings new, fixed and changed,
    and the metrics that moved, as Markdown for a pull-request comment."""
    from . import diff as differ
    from .report import markdown

    try:
        change = differ.compare(differ.load(base), differ.load(head))
        text = differ.to_markdown(change, fail_on)
        if max_chars is not None:
            text = markdown.fit(text, max_chars)
        if out_file:
            Path(out_file).write_text(text, encoding="utf-8")
            click.echo(f"{change.summary()}. Diff: {out_file}", err=True)
        else:
            click.echo(text)
    except AuditError as error:
        print_error(error)
        sys.exit(2)
    except OSError as exc:
        print_error(AuditError(f"{exc.filename}: {exc.strerror}"))
        sys.exit(2)
    sys.exit(1 if change.failed(fail_on) else 0)


@cli.command("comment")
@click.argument("body_file", metavar="FILE")
@click.option("--pr", "number", type=int, help="Pull request number. [default: the one this workflow run is for]")
def comment_cmd(body_file, number):
    """Post FILE (report.md or diff.md) as the one sticky comment of the auditor on a pull request, or update
    it. Reads GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_EVENT_PATH as GitHub Actions sets them."""
    from .integrations.github import comment_from_env

    try:
        action, comment_id = comment_from_env(body_file, number)
    except AuditError as error:
        print_error(error)
        sys.exit(2)
    click.echo(f"audit: {action} pull-request comment {comment_id}", err=True)


def main():
    cli()
