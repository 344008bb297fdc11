"""Step 1 of the data flow: import the user's model.py and loader.py and resolve the contract.

model.py:  `model` (an nn.Module) or `build_model()`; optional `loss_fn(output, target)`,
           `make_optimizer(params)`, `make_scheduler(optimizer)`, `training_step(model, batch)`,
           `wrap(model, mesh)` (under torchrun: the job's own DDP or FSDP2 wrapping), `amp = "bf16"|"fp16"`
           (the job's mixed precision) and `make_grad_scaler()` (its GradScaler, or None for none).
loader.py: `train_loader` (or `loader`) or `build_loader()`; optional `val_loader`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from .errors import AuditError, from_user_exception
from .interrupt import Stopped


@dataclass
class UserSetup:
    model: nn.Module
    train_loader: Iterable
    val_loader: Iterable | None = None
    loss_fn: Callable | None = None
    make_optimizer: Callable | None = None
    training_step: Callable | None = None
    make_scheduler: Callable | None = None
    # A LightningModule's configure_optimizers, called on the probe's copy: (optimizer, scheduler or None).
    configure_optimizers: Callable | None = None
    wrap: Callable | None = None  # model.py's wrap(model, mesh), used under torchrun
    amp: str | None = None  # model.py's `amp`: the precision the job trains in (--amp overrides)
    make_grad_scaler: Callable | None = None
    # model.py's own `optimizer` and `scheduler` instances, written as in a training script: the probe copies
    # them over its copy of the model, as it does the API's optimizer= and scheduler=.
    optimizer: object | None = None
    scheduler: object | None = None
    model_file: str = "<api>"
    data_file: str = "<api>"


def import_user_file(path: str | Path, role: str) -> ModuleType:
    path = Path(path)
    if not path.exists():
        raise AuditError(f"{path}: no such file; pass the path to your {role} (a .py file)")
    if path.is_dir() or path.suffix != ".py":
        raise AuditError(f"{path}: expected a Python file (.py) for the {role}")
    name = f"_audited_{role.replace('.', '_')}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # The user's file may import its neighbours (a shared data.py, say), as it would when run directly.
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise AuditError(f"{path}: the file called exit({exc.code}) while being imported; guard "
                         "script code with `if __name__ == '__main__':`") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | Stopped):
            raise
        raise from_user_exception(exc, f"importing {path}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def call_user(fn: Callable, *args, what: str):
    """Call a function of the user's; an exception becomes an AuditError pointing at their frames."""
    try:
        return fn(*args)
    except (AuditError, StopIteration):
        raise
    except Exception as exc:
        raise from_user_exception(exc, what) from None


def _optional_callable(module: ModuleType, name: str, path: str) -> Callable | None:
    value = getattr(module, name, None)
    if value is not None and not callable(value):
        raise AuditError(f"{path}: `{name}` must be a function, got {type(value).__name__}")
    return value


def _by_type(module: ModuleType, name: str, path: str):
    """model.py's optimizer or scheduler under another name (`opt = SGD(...)`, `sched = StepLR(opt, ...)`), as
    training scripts write them: passing it over would audit the default AdamW in its place. Two of one kind
    (a GAN's two optimizers) cannot be told apart, so the user names one."""
    sched = torch.optim.lr_scheduler
    kinds = (torch.optim.Optimizer,) if name == "optimizer" else (sched.LRScheduler, sched.ReduceLROnPlateau)
    found: dict[int, str] = {}  # one object under two names is one
    for k, v in vars(module).items():
        if not k.startswith("_") and isinstance(v, kinds):
            found.setdefault(id(v), k)
    if len(found) > 1:
        names = ", ".join(f"`{k}`" for k in found.values())
        raise AuditError(f"{path}: defines {len(found)} {name}s ({names}); name the one to audit `{name}`")
    return getattr(module, next(iter(found.values()))) if found else None


def _instance(module: ModuleType, name: str, path: str, maker: str):
    """model.py's `optimizer` or `scheduler` object. Beside its make_ function it would be one of two: which
    one the job uses cannot be told, so neither is guessed."""
    value = getattr(module, name, None)
    if isinstance(value, ModuleType):  # `from torch import optim as optimizer` is not one
        value = None
    if value is None and getattr(module, maker, None) is None:
        value = _by_type(module, name, path)
    if value is None:
        return None
    if getattr(module, maker, None) is not None:
        raise AuditError(f"{path}: defines both `{name}` and `{maker}()`; keep the one your job uses")
    if name == "optimizer":
        from .probe.optim import unwrap

        try:
            unwrap(value)
        except AuditError:
            raise AuditError(f"{path}: `optimizer` is a {type(value).__name__}, expected a torch.optim.Optimizer "
                             "over `model`'s parameters (or define make_optimizer(params))") from None
    elif not hasattr(value, "step") or not hasattr(value, "state_dict"):
        raise AuditError(f"{path}: `scheduler` is a {type(value).__name__}, expected an LR scheduler built on "
                         "`optimizer` (or define make_scheduler(optimizer))")
    return value


def _amp_mode(module: ModuleType, path: str) -> str | None:
    value = getattr(module, "amp", None)
    if value is None or isinstance(value, ModuleType):  # `from torch import amp` is not a setting
        return None
    if not isinstance(value, str) or value not in ("bf16", "fp16"):
        raise AuditError(f"{path}: `amp = {value!r}`: expected \"bf16\" or \"fp16\" (or no `amp` for float32)")
    return value


def resolve_model(module: ModuleType, path: str) -> nn.Module:
    if hasattr(module, "model"):
        model = module.model
        source = "`model`"
    elif callable(getattr(module, "build_model", None)):
        model = call_user(module.build_model, what=f"calling build_model() in {path}")
        source = "build_model()"
    else:
        raise AuditError(f"{path}: defines neither `model` (an nn.Module) nor `build_model()`; add one of them")
    if not isinstance(model, nn.Module):
        raise AuditError(f"{path}: {source} is a {type(model).__name__}, expected a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise AuditError(f"{path}: the model has no parameters, so there is nothing to train")
    return model


def resolve_loader(module: ModuleType, path: str, required: bool = True) -> Iterable | None:
    for name in ("train_loader", "loader"):
        if getattr(module, name, None) is not None:
            loader, source = getattr(module, name), f"`{name}`"
            break
    else:
        if callable(getattr(module, "build_loader", None)):
            loader = call_user(module.build_loader, what=f"calling build_loader() in {path}")
            source = "build_loader()"
        elif required:
            raise AuditError(f"{path}: defines neither `train_loader` (or `loader`) nor `build_loader()`; "
                             "add one of them, or pass --data loader.py")
        else:
            return None
    if isinstance(loader, torch.Tensor) or not isinstance(loader, Iterable):
        raise AuditError(f"{path}: {source} is a {type(loader).__name__}, expected an iterable of batches "
                         "(a DataLoader, a list of (inputs, targets), a generator, ...)")
    return loader


def load_files(model_path: str | Path, data_path: str | Path | None, seed: int | None = None) -> UserSetup:
    """`seed`: python, numpy and torch are seeded with it before either file is imported, so a model built
    at import (the usual `model = Net()`) and a shuffling loader start the same in every run of one command.
    A file that seeds itself overrides it, as it would in the user's own job."""
    if seed is not None:
        from .probe.state import seed_everything

        seed_everything(seed)
    model_module = import_user_file(model_path, "model.py")
    data_module = import_user_file(data_path, "loader.py") if data_path else model_module
    data_file = str(data_path or model_path)
    model = resolve_model(model_module, str(model_path))
    train_loader = resolve_loader(data_module, data_file, required=False)
    from .lightning_module import is_lightning_module, setup_from_module

    if is_lightning_module(model) and getattr(model_module, "training_step", None) is None:
        return setup_from_module(model, train_loader, source=f"{model_path} ({type(model).__name__})",
                                 data_file=data_file if train_loader is not None else "",
                                 val_loader=getattr(data_module, "val_loader", None))
    if train_loader is None:
        hint = "" if data_path else "; pass --data loader.py"
        raise AuditError(f"{data_file}: defines neither `train_loader` (or `loader`) nor `build_loader()`{hint}")
    val_loader = getattr(data_module, "val_loader", None)
    return UserSetup(
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        loss_fn=_optional_callable(model_module, "loss_fn", str(model_path)),
        make_optimizer=_optional_callable(model_module, "make_optimizer", str(model_path)),
        training_step=_optional_callable(model_module, "training_step", str(model_path)),
        make_scheduler=_optional_callable(model_module, "make_scheduler", str(model_path)),
        wrap=_optional_callable(model_module, "wrap", str(model_path)),
        amp=_amp_mode(model_module, str(model_path)),
        make_grad_scaler=_optional_callable(model_module, "make_grad_scaler", str(model_path)),
        optimizer=_instance(model_module, "optimizer", str(model_path), "make_optimizer"),
        scheduler=_instance(model_module, "scheduler", str(model_path), "make_scheduler"),
        model_file=str(model_path),
        data_file=data_file,
    )
