"""The model's graph: a ``torch.fx`` interpreter that composes Lipschitz constants.

The model is traced (normalization layers and ``torch.nn`` layers kept whole) and run
once; node by node, a constant of the map from the model input to that node's value is
composed: a layer or a function of :data:`~captum_rig.stability.layers.RULES` multiplies
by its constant, a residual addition adds, a concatenation takes the root of the sum of
squares, a constant factor scales. An operation with no known constant stops the bound.
"""

import inspect
import math
import operator
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from captum_rig.stability.layers import (
    ACTIVATION,
    AVERAGE,
    ISOMETRY,
    POSITIVE_MODES,
    REDUCE,
    RESAMPLE,
    OperatorNorm,
    Options,
    Rule,
    call_rule,
    layer_norm,
    linear_norm,
    module_norm,
    normalize_stats,
)

__all__ = ["graph_bound", "block_names", "block_norms", "moving_nodes", "unwrap"]

# The operations that combine tensors; layer-like functions come from RULES.
_ADD = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul}
_MUL_METHODS = {"mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, torch.true_divide}
_DIV_METHODS = {"div", "div_"}
_CAT = {torch.cat, torch.concat, torch.stack}
# Wrappers whose ``module`` is the model itself.
_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping normalization layers whole (their checks do not trace)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or normalize_stats(m) is not None


def _op_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.is_floating_point() or value.is_complex()
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return False


def _holds_discrete(value: Any) -> bool:
    """An integer or boolean tensor (or a tuple holding one)."""
    if isinstance(value, Tensor):
        return not (value.is_floating_point() or value.is_complex())
    if isinstance(value, (tuple, list)):
        return any(_holds_discrete(v) for v in value)
    return False


def _simple_index(index: Any) -> bool:
    """Slices, integers, None and Ellipsis: a sub-array, each entry at most once."""
    if isinstance(index, tuple):
        return all(_simple_index(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, (int, slice))


class _Lipschitz(torch.fx.Interpreter):
    """Runs the traced model once and, node by node, a Lipschitz constant of the map from
    the model input to that node's value (None where an operation has no known one)."""

    def __init__(self, module: torch.fx.GraphModule, opts: Options) -> None:
        super().__init__(module)
        self.opts = opts
        self.lip: Dict[torch.fx.Node, Optional[float]] = {}
        self.layers: List[OperatorNorm] = []
        self.unknown: Optional[str] = None
        self.inputs_seen = 0

    def run_node(self, n: torch.fx.Node) -> Any:
        held = [m for m in n.all_input_nodes if isinstance(self.env.get(m), Tensor)]
        versions = {m: self.env[m]._version for m in held}
        value = super().run_node(n)
        try:
            self.lip[n] = self._node_constant(n, value)
        except Exception as e:  # a rule that cannot read this call: no constant, not a crash
            self._fail(f"no known Lipschitz constant for {_op_name(n)} (node {n.name!r}: "
                       f"{type(e).__name__})")  # fmt: skip
            self.lip[n] = None
        for m, version in versions.items():
            if self.env[m]._version != version:  # modified in place
                self._mutated(n, m, value)
        return value

    def _mutated(self, n: torch.fx.Node, target: torch.fx.Node, value: Any) -> None:
        """After ``n`` changed ``target``'s tensor in place, every live node that shares its
        storage holds new values: an exact alias takes the new constant, a partial one
        (a view) the root of the sum of squares of its old and the new constant."""
        tensor = self.env[target]
        if isinstance(value, Tensor) and value.data_ptr() == tensor.data_ptr():
            new = self.lip[n]
        elif n.target is operator.setitem and self.lip[target] is not None:
            moving = [m for m in n.all_input_nodes if m is not target and self.lip[m] != 0]
            new = None if moving else self.lip[target]  # a region set to constants
        else:
            new = None
        if new is None:
            self._fail(f"{_op_name(n)} (node {n.name!r}) modifies a tensor in place in a way "
                       "with no known constant")  # fmt: skip
        storage = tensor.untyped_storage().data_ptr()
        for m, held in list(self.env.items()):
            if m is n or not isinstance(held, Tensor) or self.lip.get(m) is None:
                continue
            if held.untyped_storage().data_ptr() != storage:
                continue
            same = (held.data_ptr(), held.shape, held.stride()) == (
                tensor.data_ptr(), tensor.shape, tensor.stride())  # fmt: skip
            if new is None or (not same and 0 in held.stride()):
                self.lip[m] = None
            else:
                self.lip[m] = new if same else math.hypot(self.lip[m], new)

    def _fail(self, why: str) -> None:
        if self.unknown is None:
            self.unknown = why

    def _node_constant(self, n: torch.fx.Node, value: Any) -> Optional[float]:
        if n.op == "placeholder":
            self.inputs_seen += 1
            return 1.0 if self.inputs_seen == 1 else 0.0
        if n.op == "get_attr":
            return 0.0  # parameters and buffers: not moved by the input
        ls = [self.lip[m] for m in n.all_input_nodes]
        if n.op == "output":
            if None in ls:
                return None
            leaves = [m for m in n.all_input_nodes if _holds_tensor(self.env.get(m))]
            return math.sqrt(sum(self.lip[m] ** 2 for m in leaves))
        if None in ls:
            return None
        if not any(ls):
            return 0.0  # computed from constants (and sizes) only
        if _holds_discrete(value):
            self._fail(f"{_op_name(n)} (node {n.name!r}) gives an integer or boolean tensor "
                       "computed from the input: a discontinuous operation has no Lipschitz "
                       "constant")  # fmt: skip
            return None
        if not _holds_tensor(value):
            return 0.0  # sizes and shapes: fixed for inputs of the example's size
        result = self._rule(n, value)
        if result is None:
            self._fail(f"no known Lipschitz constant for {_op_name(n)} (node {n.name!r})")
        return result

    def _dependent(self, n: torch.fx.Node) -> List[torch.fx.Node]:
        return [m for m in n.all_input_nodes if self.lip[m]]

    def _unary(self, n: torch.fx.Node) -> Optional[float]:
        """The Lipschitz constant of the first argument, if it is the only moving one."""
        x = n.args[0] if n.args else None
        if not isinstance(x, torch.fx.Node) or self._dependent(n) != [x]:
            return None
        return self.lip[x]

    def _rule(self, n: torch.fx.Node, value: Any) -> Optional[float]:
        target, method = n.target, n.op == "call_method"
        if n.op == "call_module":
            return self._module(n)
        if n.op not in ("call_function", "call_method"):
            return None
        if target is operator.getitem:
            source = self.env[n.args[0]]
            if isinstance(source, Tensor) and not _simple_index(n.args[1]):
                return None
            return self._unary(n)
        if target in _ADD or (method and target in _ADD_METHODS):
            return self._add(n, value)
        if target in _CAT:
            return self._cat(n)
        if target in _MUL or (method and target in _MUL_METHODS):
            return self._scale(n, value, divide=False)
        if target in _DIV or (method and target in _DIV_METHODS):
            return self._scale(n, value, divide=True)
        factor = self._unary_factor(n, value)
        lip = self._unary(n)
        return None if factor is None or lip is None else factor * lip

    def _cat(self, n: torch.fx.Node) -> Optional[float]:
        """Concatenation of distinct parts: ``√(L_a² + L_b² + …)``."""
        parts = n.args[0] if n.args else n.kwargs.get("tensors", ())
        if isinstance(parts, torch.fx.Node):  # a tuple node: its constant covers all parts
            return self._unary(n)
        nodes = [m for m in parts if isinstance(m, torch.fx.Node)]
        if self._dependent(n) != [m for m in dict.fromkeys(nodes) if self.lip[m]]:
            return None
        return math.sqrt(sum(self.lip[m] ** 2 for m in nodes))

    def _unary_factor(self, n: torch.fx.Node, value: Any) -> Optional[float]:
        """The constant of a function or method of :data:`RULES` at this call."""
        rule = call_rule(n.target, n.op == "call_method")
        if rule is None:
            return None
        if rule.kind == ACTIVATION:
            return rule.constant_for(self._parameter(n, rule))
        if rule.kind == ISOMETRY:
            return self._kept_scale(n, rule)
        if rule.kind == REDUCE:  # each output entry sums m inputs: √m, or a mean: 1/√m
            m = self.env[n.args[0]].numel() / max(1, value.numel())
            return m**rule.constant
        if rule.kind == AVERAGE:
            return self._linear(n)
        if rule.kind == RESAMPLE:
            mode = n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest")
            return self._linear(n) if mode in POSITIVE_MODES else None
        # max pooling: the norm of the module that the call's arguments make
        x = self.env[n.args[0]]
        args = torch.fx.node.map_arg(n.args[1:], lambda m: self.env[m])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda m: self.env[m])
        module = rule.modules[0](*args, **kwargs)
        return module_norm(module, tuple(x.shape), x.device, self.opts)[0]

    def _kept_scale(self, n: torch.fx.Node, rule: Rule) -> Optional[float]:
        """An isometry's constant; a dropout or stochastic depth call that is training
        keeps entries scaled by ``1/(1 − p)`` (alpha dropout: no rule)."""
        if rule.name not in ("dropout", "stochastic_depth") or n.op != "call_function":
            return rule.constant
        args = torch.fx.node.map_arg(n.args, lambda m: self.env[m])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda m: self.env[m])
        bound = inspect.signature(n.target).bind(*args, **kwargs)
        bound.apply_defaults()
        training, p = bool(bound.arguments["training"]), float(bound.arguments["p"])
        if not training or p == 0:
            return rule.constant
        if "alpha" in n.target.__name__:
            return None
        return 0.0 if p >= 1 else 1 / (1 - p)

    @staticmethod
    def _parameter(n: torch.fx.Node, rule: Rule) -> Any:
        """The value of the rule's parameter: the second argument or its keyword."""
        if rule.parameter is None:
            return None
        return n.args[1] if len(n.args) > 1 else n.kwargs.get(rule.parameter, rule.default)

    def _linear(self, n: torch.fx.Node) -> float:
        """Norm of a linear op (pooling, mean, resampling) on one example's input."""
        x = self.env[n.args[0]]
        args = torch.fx.node.map_arg(n.args[1:], lambda m: self.env[m])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda m: self.env[m])
        if n.op == "call_method":

            def forward(v: Tensor) -> Tensor:
                return getattr(v, n.target)(*args, **kwargs)
        else:

            def forward(v: Tensor) -> Tensor:
                return n.target(v, *args, **kwargs)

        return linear_norm(forward, tuple(x.shape[1:]), x.device, self.opts)[0]

    def _module(self, n: torch.fx.Node) -> Optional[float]:
        module = self.module.get_submodule(n.target)
        lip = self._unary(n)
        x = self.env[n.args[0]] if n.args else None
        if lip is None or not isinstance(x, Tensor):
            norm, method, shape = None, "unknown: does not take one tensor", ()
        else:
            shape = tuple(x.shape)
            norm, method = layer_norm(module, shape, x.device, self.opts)
        self.layers.append(OperatorNorm(n.target, type(module).__name__, shape, norm, method))
        if norm is None:
            self._fail(f"no known Lipschitz constant for layer {n.target!r} "
                       f"({type(module).__name__})")  # fmt: skip
            return None
        return norm * lip

    def _copies(self, x: torch.fx.Node, value: Tensor) -> float:
        """``√k`` for an operand broadcast to ``k`` copies of each entry (1 when not)."""
        return math.sqrt(value.numel() / self.env[x].numel())

    def _add(self, n: torch.fx.Node, value: Tensor) -> Optional[float]:
        """``x ± y``: ``L_x + |α| L_y``, an operand broadcast to k copies counts ``√k``×."""
        alpha = abs(float(n.kwargs.get("alpha", 1)))
        total = 0.0
        for i, arg in enumerate(n.args[:2]):
            if isinstance(arg, torch.fx.Node) and self.lip[arg]:
                copies = self._copies(arg, value)
                total += self.lip[arg] * copies * (alpha if i == 1 else 1.0)
        if len([m for m in self._dependent(n) if m not in n.args[:2]]):
            return None
        return total

    def _scale(self, n: torch.fx.Node, value: Tensor, divide: bool) -> Optional[float]:
        """``x · c`` or ``x / c`` with a constant ``c``: ``max|c|`` or ``1 / min|c|`` (an
        ``x`` broadcast to k copies of each entry: ``√k`` times that)."""
        if len(n.args) != 2 or n.kwargs:
            return None
        moving = [i for i, a in enumerate(n.args) if isinstance(a, torch.fx.Node) and self.lip[a]]
        if len(moving) != 1 or (divide and moving[0] != 0):
            return None
        x = n.args[moving[0]]
        other = n.args[1 - moving[0]]
        c = self.env[other] if isinstance(other, torch.fx.Node) else other
        if isinstance(c, Tensor):
            c = c.detach().abs()
            c = float(c.min()) if divide else float(c.max())
        elif isinstance(c, (int, float)):
            c = abs(float(c))
        else:
            return None
        lip = self.lip[x] * self._copies(x, value)
        if divide:
            return None if c == 0 else lip / c
        return lip * c


def _trace_graph(model: nn.Module) -> torch.fx.GraphModule:
    graph = _Tracer().trace(model)
    return torch.fx.GraphModule(model, graph)


def _hooked(model: nn.Module) -> Optional[str]:
    """A note naming the first module with forward hooks (which torch.fx does not see)."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return "not computed: global forward hooks are registered (torch.fx does not see them)"
    for name, m in model.named_modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return (
                f"not computed: module {name or '(model)'!r} ({type(m).__name__}) has a "
                "forward hook or forward pre-hook, which torch.fx does not see: remove it"
            )
    return None


def _refused(model: nn.Module) -> Optional[str]:
    """Why the model cannot be followed at all, or None."""
    if isinstance(model, torch.jit.ScriptModule):
        return (
            "not computed: a TorchScript model (torch.jit.script or trace) cannot be traced "
            "by torch.fx; pass the Python nn.Module instead"
        )
    return _hooked(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DataParallel`` / ``DistributedDataParallel`` wrappers."""
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def graph_bound(
    model: nn.Module, example_input: Tensor, opts: Options
) -> Tuple[Optional[float], str, List[OperatorNorm], Optional[torch.fx.GraphModule]]:
    """``(bound, note, layers, graph)`` of one module on ``example_input`` (not changed)."""
    model = unwrap(model)
    refused = _refused(model)
    if refused is not None:
        return None, refused, [], None
    shape = tuple(example_input.shape)
    if _Tracer().is_leaf_module(model, ""):
        norm, method = layer_norm(model, shape, example_input.device, opts)
        layer = OperatorNorm("(model)", type(model).__name__, shape, norm, method)
        if norm is None:
            method = f"not computed: no known Lipschitz constant for {type(model).__name__}"
        return norm, method, [layer], None
    try:
        graph = _trace_graph(model)
    except Exception as e:  # torch.fx raises many kinds on untraceable Python
        why = (str(e).splitlines() or [""])[0]
        return None, (
            f"not computed: torch.fx could not trace {type(model).__name__} "
            f"({type(e).__name__}: {why})"
        ), [], None  # fmt: skip
    interpreter = _Lipschitz(graph, opts)
    with torch.no_grad():  # on a copy: the model may change its input in place
        interpreter.run(example_input.detach().clone())
    output = next(n for n in reversed(graph.graph.nodes) if n.op == "output")
    bound = interpreter.lip[output]
    if bound is None:
        return None, f"not computed: {interpreter.unknown}", interpreter.layers, graph
    return bound, "composed along the model's graph", interpreter.layers, graph


def block_names(
    graph: torch.fx.GraphModule, lip: Dict[torch.fx.Node, Optional[float]]
) -> List[str]:
    """Modules whose forward adds or concatenates two moving tensors (residual and dense
    blocks), outermost first: the innermost module around each such operation, keeping
    only those not inside another."""
    found = []
    for n in graph.graph.nodes:
        merges = (
            n.target in _ADD
            or n.target in _CAT
            or (n.op == "call_method" and n.target in _ADD_METHODS)
        )
        moving = [m for m in n.all_input_nodes if lip.get(m)]
        if n.op in ("call_function", "call_method") and merges and len(moving) >= 2:
            stack = list((n.meta.get("nn_module_stack") or {}).values())
            if stack and stack[-1][0] and stack[-1][0] not in found:
                found.append(stack[-1][0])
    return [b for b in found if not any(b.startswith(o + ".") for o in found if o != b)]


def block_norms(
    model: nn.Module, example_input: Tensor, names: List[str], opts: Options
) -> List[OperatorNorm]:
    """Each block's own bound, from the input it receives in one forward pass."""
    inputs: Dict[str, Any] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, args: Tuple[Any, ...]) -> None:
            if name not in inputs:
                inputs[name] = (
                    args[0].detach().clone()
                    if len(args) == 1 and isinstance(args[0], Tensor)
                    else None
                )  # a copy: the forward may change it in place

        return record

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_pre_hook(hook(name)))
        with torch.no_grad():
            model(example_input.detach().clone())
    finally:
        for handle in handles:
            handle.remove()
    blocks = []
    for name in names:
        module, x = model.get_submodule(name), inputs.get(name)
        if x is None:
            blocks.append(OperatorNorm(name, type(module).__name__, (), None,
                                       "unknown: does not take one tensor"))  # fmt: skip
            continue
        bound, note, _, _ = graph_bound(module, x, opts)
        blocks.append(OperatorNorm(name, type(module).__name__, tuple(x.shape), bound, note))
    return blocks


def moving_nodes(graph: torch.fx.GraphModule) -> Dict[Any, float]:
    """Which nodes depend on the input (1.0) and which do not (0.0), by the graph alone."""
    moving: Dict[Any, float] = {}
    first = True
    for n in graph.graph.nodes:
        if n.op == "placeholder":
            moving[n] = 1.0 if first else 0.0
            first = False
        else:
            moving[n] = 1.0 if any(moving.get(m) for m in n.all_input_nodes) else 0.0
    return moving
