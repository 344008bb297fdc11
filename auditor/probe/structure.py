"""What feeds what: one forward pass, traced module by module, tells which layer's output goes straight into
which other layer (a biased Linear into BatchNorm, Dropout into the output layer). Runs on the probe's first
no-grad forward, so it costs nothing extra."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass
class ModuleCall:
    name: str
    type: str
    has_bias: bool
    dropout_p: float | None
    training: bool
    inputs: list[int]  # ids of the tensors it received
    output: int | None
    output_ptr: int | None = None  # its storage: a view of it (logits.view(-1, C)) shares it
    has_params: bool = False


@dataclass
class Structure:
    calls: list[ModuleCall] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (producer, consumer): output fed straight in
    output_producer: str | None = None  # the module whose output is the model's output
    output_params: list[str] = field(default_factory=list)  # its own parameters' names (a tied weight included)
    # Tensor additions between two modules' outputs (`out += identity`, `x + self.f(x)`): the ends of residual
    # branches and their shortcuts, as ((module, its call's index), (module, index)).
    added: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)

    def call(self, name: str) -> ModuleCall | None:
        return next((c for c in self.calls if c.name == name), None)


class StructureTracer:
    """Global forward hooks, active only inside `with`; the model's own modules only."""

    def __init__(self, model: nn.Module):
        self._names = {id(m): n for n, m in model.named_modules() if n}
        self._modules = {n: m for n, m in model.named_modules() if n}
        self._handles = []
        self._alive: list[torch.Tensor] = []  # keeps traced tensors alive so their ids are not reused
        self.structure = Structure()

    def __enter__(self):
        self._handles = [nn.modules.module.register_module_forward_hook(self._hook)]
        # tensor id -> (the module that returned it last, as the forward runs; the index of that call): what
        # feeds a module, and what an addition adds
        self._producer: dict[int, tuple[str, int]] = {}
        self._sums = _Additions(self._add)
        self._sums.__enter__()
        return self

    def __exit__(self, *exc):
        self._sums.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._alive.clear()
        return False

    def _add(self, ids: list[int]) -> None:
        # An operand no module returned (the sum of an earlier block) existed before this addition: index -1.
        pair = tuple(self._producer.get(i, ("", -1)) for i in ids)
        if any(name for name, _ in pair) and pair not in self.structure.added:
            self.structure.added.append(pair)

    def _hook(self, module, args, output):
        name = self._names.get(id(module))
        if name is None or any(True for _ in module.children()):
            return  # containers pass tensors through; the leaves tell what feeds what
        ins = [a for a in args if isinstance(a, torch.Tensor)]
        out = output if isinstance(output, torch.Tensor) else None
        self._alive += ins + ([out] if out is not None else [])
        self.structure.edges += [(p[0], name) for p in map(self._producer.get, map(id, ins)) if p]
        if out is not None:
            self._producer[id(out)] = (name, len(self.structure.calls))
        bias = getattr(module, "bias", None)
        self.structure.calls.append(ModuleCall(
            name=name, type=type(module).__name__, has_bias=isinstance(bias, torch.Tensor),
            dropout_p=float(module.p) if isinstance(module, nn.modules.dropout._DropoutNd) else None,
            training=module.training, inputs=[id(t) for t in ins], output=id(out) if out is not None else None,
            output_ptr=out.data_ptr() if out is not None and out.numel() else None,
            has_params=any(True for _ in module.parameters(recurse=False))))

    def name_output_params(self, model: nn.Module) -> None:
        """The output layer's parameters by their names in the model: a head tied to the input embedding
        (GPT-2's lm_head) is listed under the embedding's name, which is the only name it has."""
        producer = self.structure.output_producer
        if not producer:
            return
        own = {id(p) for p in model.get_submodule(producer).parameters(recurse=False)}
        self.structure.output_params = [n for n, p in model.named_parameters() if id(p) in own]

    def mark_output(self, output, loss_input: torch.Tensor | None = None) -> None:
        """The module whose output the model returns; where the model returns its loss instead (a Hugging Face
        model given `labels`), the layer with parameters whose output the loss was called on, or a view of it."""
        if isinstance(output, torch.Tensor):
            self.structure.output_producer = next(
                (c.name for c in reversed(self.structure.calls) if c.output == id(output)), None)
        elif isinstance(loss_input, torch.Tensor) and loss_input.numel():
            ptr = loss_input.data_ptr()
            self.structure.output_producer = next(
                (c.name for c in reversed(self.structure.calls) if c.output_ptr == ptr and c.has_params), None)


class _Additions(TorchFunctionMode):
    """Tensors added to another tensor, in place or not: modules cannot show it, the sum is made between them."""

    _ADD = {"add", "add_", "__add__", "__iadd__", "__radd__"}

    def __init__(self, seen):
        super().__init__()
        self._seen = seen  # called with the operands' ids, while the producers are the ones that made them

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self._ADD and len(args) >= 2 and all(
                isinstance(a, torch.Tensor) for a in args[:2]):
            self._seen([id(a) for a in args[:2]])
        return func(*args, **(kwargs or {}))


def structure_hash(model: nn.Module) -> str:
    """A short digest of what the model is made of, independent of the values of its weights."""
    # The class name without its module: a model.py imported from two paths is one model.
    lines = [f"{name}:{type(m).__qualname__}" for name, m in model.named_modules()]
    lines += [f"{name}:{tuple(t.shape)}:{t.dtype}:{getattr(t, 'requires_grad', False)}"
              for name, t in [*model.named_parameters(), *model.named_buffers()]]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def dropout_rates(model: nn.Module) -> list[tuple[str, float]]:
    """(name, p) of the model's dropout modules, where p > 0: what each zeroes in training."""
    return [(name, float(m.p)) for name, m in model.named_modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
