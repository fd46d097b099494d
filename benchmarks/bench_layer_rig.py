"""LayerRIG against Captum's LayerIntegratedGradients at equal gradient evaluations.

Prints, from one run on one machine, the wall time of LayerRIG over LayerIG (same model,
layer, input, target, internal_batch_size and number of gradient evaluations), for
LayerRIG's paper method and its complete path variant (which also evaluates the layer at
the cells' edges, with forward passes that stop at the layer). Target: <= 1.4. Captum's
LayerConductance, which has the path variant's form (a gradient and a layer value per
step), is timed too, for scale.

Models: the demo's small CNN (at its second conv block) and torchvision's ResNet-18 with
random weights (at ``layer2``), both at ``--size`` pixels.

Usage:
    python benchmarks/bench_layer_rig.py                  # 112 px, 32 evaluations
    python benchmarks/bench_layer_rig.py --size 64 --repeats 1   # quick
"""

import argparse
import statistics
import time

import torch
import torchvision
from captum.attr import LayerConductance, LayerIntegratedGradients

from captum_rig import LayerRIG
from captum_rig.models import build_demo_model


def build(name: str, size: int, device: str):
    """(model, layer, input) with fixed random weights."""
    torch.manual_seed(0)
    if name == "small_cnn":
        model = build_demo_model().eval().to(device)
        layer = model[5]  # the second conv block's conv
    else:
        model = torchvision.models.resnet18(weights=None).eval().to(device)
        layer = model.layer2
    return model, layer, torch.rand(1, 3, size, size, device=device)


def run(method: str, model, layer, x, n_steps: int, batch: int) -> None:
    """One attribution at ``n_steps`` gradient evaluations."""
    if method == "layer_ig":
        LayerIntegratedGradients(model, layer).attribute(
            x, target=3, n_steps=n_steps, internal_batch_size=batch
        )
    elif method == "layer_conductance":
        LayerConductance(model, layer).attribute(
            x, target=3, n_steps=n_steps, internal_batch_size=batch
        )
    else:
        LayerRIG(model, layer).attribute(
            x, target=3, n_steps=n_steps, method=method, internal_batch_size=batch
        )


def timed(method: str, args, model, layer, x) -> float:
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(method, model, layer, x, args.steps, args.batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112, help="image height = width")
    parser.add_argument("--steps", type=int, default=32, help="gradient evaluations")
    parser.add_argument("--batch", type=int, default=16, help="internal_batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    print(
        f"device={args.device} threads={torch.get_num_threads()} input=1x3x{args.size}x"
        f"{args.size} evaluations={args.steps} internal_batch_size={args.batch}"
    )
    methods = ("layer_ig", "paper", "gausslegendre", "layer_conductance")
    for name in ("small_cnn", "resnet18"):
        model, layer, x = build(name, args.size, args.device)
        for method in methods:  # warm-up: kernel selection and allocator growth
            run(method, model, layer, x, args.batch, args.batch)
        times = {m: [] for m in methods}
        for _ in range(args.repeats):  # interleaved, so drifts hit every method alike
            for method in methods:
                times[method].append(timed(method, args, model, layer, x))
        base = statistics.median(times["layer_ig"])
        print(f"{name}: LayerIG {base:.3f}s")
        for method in ("paper", "gausslegendre"):
            t = statistics.median(times[method])
            print(f"  LayerRIG({method}) {t:.3f}s  ratio LayerRIG/LayerIG = {t / base:.2f}")
        conductance = statistics.median(times["layer_conductance"])
        print(
            f"  Captum LayerConductance {conductance:.3f}s  ratio {conductance / base:.2f}: "
            "the same conductance form, for scale"
        )


if __name__ == "__main__":
    main()
