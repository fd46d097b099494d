"""Several models side by side: clean accuracy, Lipschitz bounds, minimal distortions.

:func:`compare_stability` makes the table (one row per model and attack), as in the
comparison of a network trained from scratch with one fine-tuned from ImageNet (the
table and its files: :mod:`~captum_rig.stability.table`).

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.

    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from captum_rig._checks import check_choice, check_int, check_models, check_norm, model_device
from captum_rig.metrics import accuracy as model_accuracy
from captum_rig.stability._stream import image_batches
from captum_rig.stability.attacks import MINIMAL_NORM_ATTACKS, AttackSearch, best_distortion
from captum_rig.stability.distortion import DistortionSearch, gaussian_search, pgd_search
from captum_rig.stability.lipschitz import LipschitzReport, lipschitz_analysis
from captum_rig.stability.local import local_lipschitz
from captum_rig.stability.minimal import MinimalDistortion
from captum_rig.stability.table import UNITS, StabilityRow, StabilityTable

__all__ = ["ATTACKS", "compare_stability"]

ATTACKS = ("pgd", "gaussian", *MINIMAL_NORM_ATTACKS)
"""The attacks of :func:`compare_stability`: PGD (a search over the radius), Gaussian
noise along a fixed direction, and the minimal-norm attacks DeepFool, FAB and CW."""
Search = Union[DistortionSearch, AttackSearch]


class _ModelRun:
    """One model's part of a comparison: its bounds, correct predictions and searches."""

    def __init__(
        self,
        model: nn.Module,
        report: LipschitzReport,
        searches: Dict[Tuple[str, str], Search],
        local: bool,
    ) -> None:
        self.model, self.report, self.searches = model, report, searches
        self.local: Optional[float] = 0.0 if local else None
        self.correct = 0

    def add(
        self, images: Tensor, labels: Tensor, batch_size: int, describe: Callable[[str], None]
    ) -> None:
        """Counts and attacks one batch."""
        describe("accuracy")
        # metrics.accuracy of one batch, back as a count (exact: the count is an integer)
        self.correct += round(model_accuracy(self.model, images, labels, batch_size) * len(images))
        if self.local is not None:
            describe("local Lipschitz")
            x = images.to(model_device(self.model))
            self.local = max(self.local, local_lipschitz(self.model, x, batch_size=batch_size))
        several = len({norm for _, norm in self.searches}) > 1
        for (attack, norm), search in self.searches.items():
            describe(f"{attack} minimal distortion" + (f" ({norm})" if several else ""))
            search.add(images)

    def rows(self, name: str, n_images: int) -> List[StabilityRow]:
        """Per norm, one row per attack in the order given and ``best`` after them."""
        results: List[Tuple[str, MinimalDistortion]] = []
        for norm in dict.fromkeys(norm for _, norm in self.searches):
            group = [(a, s.result()) for (a, n), s in self.searches.items() if n == norm]
            adversarial = [r for a, r in group if a != "gaussian"]
            if len(adversarial) > 1:
                group.append(("best", best_distortion(adversarial)))
            results += group
        return [
            StabilityRow(
                name, attack, result.norm, result.mean, self.report.bound,
                self.correct / n_images, result.n_found, int(result.values.numel()),
                result.tolerance, self.local, result.size,
            )
            for attack, result in results
        ]  # fmt: skip


def _norms_of(attack: str) -> Tuple[str, ...]:
    return MINIMAL_NORM_ATTACKS.get(attack, ("L2",) if attack == "gaussian" else ("L2", "Linf"))


def _plan(attacks: Any, norm: Any) -> List[Tuple[str, str]]:
    """``(attack, norm)`` pairs, norm by norm: each attack in the norms it minimises
    (Gaussian noise, always L2, once, with the first norm). One norm given as a string:
    an attack that does not minimise it is an error; several: it is left out of the
    others."""
    if isinstance(attacks, str):
        attacks = (attacks,)
    attacks = list(dict.fromkeys(check_choice(a, "attacks", ATTACKS) for a in attacks))
    if not attacks:
        raise ValueError(f"attacks must name at least one of {list(ATTACKS)}")
    strict = isinstance(norm, str)
    norms = list(dict.fromkeys(check_norm(n) for n in ([norm] if strict else norm)))
    if not norms:
        raise ValueError("norm must name at least one of 'L2', 'Linf'")
    for attack in attacks:
        wrong = [n for n in norms if n not in _norms_of(attack)]
        if attack != "gaussian" and (wrong == norms or (strict and wrong)):
            raise ValueError(
                f"attacks: {attack!r} minimises {' or '.join(_norms_of(attack))}, not "
                f"norm={norm!r}; use 'pgd' or 'fab' for Linf"
            )
    plan = []
    for i, n in enumerate(norms):
        for attack in attacks:
            if attack == "gaussian":
                plan += [(attack, "L2")] if i == 0 else []
            elif n in _norms_of(attack):
                plan.append((attack, n))
    return plan


def compare_stability(
    models: Mapping[str, nn.Module],
    data: Any,
    labels: Optional[Tensor] = None,
    attacks: Sequence[str] = ("pgd", "gaussian"),
    norm: Union[str, Sequence[str]] = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    max_sigma: float = 1.0,
    n_iter: int = 100,
    certified: Optional[bool] = None,
    batch_size: int = 64,
    seed: int = 0,
    example_input: Optional[Tensor] = None,
    progress: bool = True,
    local: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> StabilityTable:
    r"""Several models side by side: accuracy, Lipschitz bounds, minimal distortions.

    Per model: the clean accuracy on the labelled images, the Lipschitz upper bound
    (:func:`lipschitz_analysis` on ``example_input``, default the first image), the
    local Lipschitz lower bound (:func:`local_lipschitz`: the largest input-Jacobian
    norm over the images), and per attack the average minimal distortion: ``"pgd"`` by
    :func:`minimal_distortion` in ``norm`` (a search over the radius), ``"gaussian"`` by
    :func:`gaussian_minimal_distortion` (always L2), ``"deepfool"``, ``"fab"`` and
    ``"cw"`` by the minimal-norm attacks (:func:`minimal_distortion` with ``attack=``;
    DeepFool and CW need ``norm="L2"``). With two adversarial attacks or more, a
    ``"best"`` row keeps each image's smallest distortion over them. The Szegedy et
    al. / "scratch vs fine-tuned" table, one row per model and attack.

    The images are read once, ``batch_size`` at a time (an iterable is cut again into
    batches of that size), and every model counts and attacks each batch before the
    next is read: memory holds one batch, not the data set, and the table equals the
    one of the concatenated images as a tensor (the attacks work per image; the noise is
    drawn per batch of ``batch_size``, in data order).

    Units: distortions are norms of perturbations of images in [0, 1]
    (``average_distortion``) and the same × 255 (``average_distortion_255``), the scale
    such tables often use; divide an L2 value by ``√(C·H·W)`` for a per-pixel RMS.

    Args:
        models (Mapping[str, nn.Module]): name → model mapping ``(N, C, H, W)`` images in
            [0, 1] to logits (normalization inside). Training flags are restored.
        data (Tensor or iterable): images ``(N, C, H, W)`` in [0, 1] (then ``labels``),
            an ``(images, labels)`` pair, or an iterable of ``(images, labels)`` batches
            such as a DataLoader (read once).
        labels (Tensor, optional): ``(N,)`` class indices when ``data`` is a tensor.
        attacks (sequence of str): among ``"pgd"``, ``"gaussian"``, ``"deepfool"``,
            ``"fab"`` and ``"cw"`` (:data:`ATTACKS`); default PGD and Gaussian noise.
        norm (str or sequence of str): the norm of the adversarial distortions,
            ``"L2"`` or ``"Linf"``, or several (e.g. ``("L2", "Linf")``): each attack
            then runs in each norm it minimises, and every norm gets its rows and its
            ``best`` row (one norm given as a string and an attack that does not
            minimise it: a ValueError).
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps of both searches.
        max_eps (float, optional): as in :func:`minimal_distortion`.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        n_iter (int): power iterations per convolution for the bound.
        certified (bool, optional): certified bounds or power
            iteration; default :func:`lipschitz_analysis`'s.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        example_input (Tensor, optional): the input size for the bound.
        progress (bool): a tqdm progress bar over the images.
        local (bool): measure the local Lipschitz lower bound.
        log (callable, optional): called with a line per model and stage of each batch
            (``"name: stage, images a-b"``), e.g. ``print`` when there is no progress bar.

    Returns:
        StabilityTable: ``rows``, ``lipschitz`` reports, ``to_markdown()``,
        ``to_csv(path)``, ``to_dict()``.

    Raises:
        ValueError: an empty ``models``, images outside [0, 1], labels of the wrong
            length or missing, batches of different image shapes, an unknown attack or
            norm.

    Examples:
        >>> nets = {"a": nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
        ...         "b": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}
        >>> table = compare_stability(nets, torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]),
        ...                           n_bisect=3, steps=2, progress=False)
        >>> [(r.model, r.attack) for r in table.rows]
        [('a', 'pgd'), ('a', 'gaussian'), ('b', 'pgd'), ('b', 'gaussian')]
        >>> loader = [(torch.rand(2, 3, 2, 2), torch.tensor([0, 1]))] * 2
        >>> compare_stability(nets, loader, attacks="gaussian", progress=False).rows[0].n_images
        4

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.
        Jere, Kumar, Koushanfar. arXiv:2012.03516.
    """
    from tqdm.auto import tqdm

    models = check_models(models)
    batches, total = image_batches(data, labels, batch_size, labels_required=True)
    plan = _plan(attacks, norm)
    batch_size = check_int(batch_size, name="batch_size", low=1)  # checked: now an int
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)
    bound_options = {} if certified is None else {"certified": bool(certified)}

    def search(model: nn.Module, attack: str, norm: str, first: Tensor) -> Search:
        if attack == "pgd":
            return pgd_search(model, first[0].numel(), norm, steps, n_bisect, max_eps)
        if attack == "gaussian":
            return gaussian_search(model, n_bisect, max_sigma, seed)
        return AttackSearch(model, attack, norm, seed=seed)

    def start(model: nn.Module, first: Tensor) -> _ModelRun:
        # the searches first: they check their arguments before the bound's work
        searches = {(attack, n): search(model, attack, n, first) for attack, n in plan}
        x0 = (first[:1] if example_input is None else example_input).to(model_device(model))
        report = lipschitz_analysis(model, x0, n_iter, seed, **bound_options)
        return _ModelRun(model, report, searches, local)

    runs: Dict[str, _ModelRun] = {}
    n_images = 0
    bar = tqdm(total=total, disable=not progress, unit="image")
    try:
        for images, batch_labels in batches:
            for name, model in models.items():
                span = f"images {n_images + 1}-{n_images + images.shape[0]}"
                describe = _describer(bar, name, log, span)
                if name not in runs:
                    describe("Lipschitz bound")
                    runs[name] = start(model, images)
                runs[name].add(images, batch_labels, batch_size, describe)
            n_images += images.shape[0]
            bar.update(images.shape[0])
    finally:
        bar.close()
    rows = [row for name, run in runs.items() for row in run.rows(name, n_images)]
    reports = {name: run.report for name, run in runs.items()}
    return StabilityTable(rows, reports, UNITS)


def _describer(
    bar: Any, name: str, log: Optional[Callable[[str], None]], span: str
) -> Callable[[str], None]:
    def describe(step: str) -> None:
        bar.set_description(f"{name}: {step}")
        if log is not None:
            log(f"{name}: {step}, {span}")

    return describe
