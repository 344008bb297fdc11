"""A script's fixes, proven on the script itself: it is re-run in a fresh process, for the same steps and seed,
with the fix applied through the same hooks that observe it (auditor/probe/loopwatch.LoopFix).

    python -m auditor.probe.rerun SPEC.json      (the auditor runs this; SPEC names the script, the fix and
                                                  where to write the evidence)

A fresh process, not a fork: the first run's imports, CUDA context and module state must not leak into the
re-run, and CUDA cannot be forked.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..engine import FixPlan
from ..errors import AuditError
from ..evidence import Evidence
from .loopwatch import LoopFix
from .script import Script, run_script

# Fields of a FixPlan that a script's re-run cannot apply through its hooks, and why.
_REPLAY_ONLY = {"batch_transform": "it changes the batches, which the script makes itself",
                "float32_modules": "it keeps modules out of autocast, which the script sets itself"}


def loop_fix(plan: FixPlan) -> tuple[LoopFix | None, str]:
    """The plan as hooks can apply it to a script, or None and why not."""
    for name, why in _REPLAY_ONLY.items():
        if getattr(plan, name):
            return None, f"not verified on a script: {why} (a model.py audit verifies it)"
    if plan.amp not in (None, "bf16"):
        return None, f"not verified on a script: a script's autocast is switched to bfloat16 only, not {plan.amp}"
    if plan.model_edit is not None and not plan.param_edits:
        return None, "not verified on a script: the edit is code the re-run process cannot receive"
    return LoopFix(zero_grad=plan.zero_grad, train_mode=plan.train_mode, eval_no_grad=plan.eval_no_grad,
                   unscale_before_clip=plan.unscale_before_clip, hold_schedule=plan.scheduler_every is not None,
                   lr=plan.lr, optimizer_settings=plan.optimizer_settings, clip_grad_norm=plan.clip_grad_norm,
                   add_missing_params=plan.add_missing_params, param_edits=tuple(plan.param_edits),
                   amp=plan.amp, scaler_init=plan.scaler_init, warmup=plan.warmup,
                   clip_max_norm=plan.clip_max_norm), ""


def rerun(script: Script, fix: LoopFix, steps: int, stats_every: int, seed: int, timeout: float | None = None,
          experiments: bool = False) -> Evidence:
    """The evidence of the script re-run with `fix`; AuditError when it could not run."""
    with tempfile.TemporaryDirectory(prefix="audit-rerun-") as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "evidence.pkl"
        spec.write_text(json.dumps({"script": asdict(script), "fix": asdict(fix), "steps": steps,
                                    "stats_every": stats_every, "seed": seed, "cwd": os.getcwd(),
                                    "experiments": experiments,
                                    "out": str(out)}))
        try:
            done = subprocess.run([sys.executable, "-m", "auditor.probe.rerun", str(spec)], capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AuditError(f"the re-run took longer than {timeout:.0f} s") from None
        if not out.exists():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise AuditError(f"the re-run failed: {last}")
        with out.open("rb") as f:
            result = pickle.load(f)
    if "error" in result:
        raise AuditError(result["error"])
    return result["evidence"]


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    os.chdir(spec["cwd"])
    fix = spec["fix"]
    fix["param_edits"] = tuple(tuple(e) for e in fix["param_edits"])
    try:
        evidence = run_script(Script(**spec["script"]), spec["steps"], spec["stats_every"], spec["seed"],
                              fix=LoopFix(**fix), experiments=spec["experiments"])
        result = {"evidence": evidence}
    except AuditError as exc:
        result = {"error": str(exc)}
    with open(spec["out"], "wb") as f:
        pickle.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
