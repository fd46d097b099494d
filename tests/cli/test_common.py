"""The options, errors and exit codes every ``captum-rig`` command shares.

Most tests call ``main([...])`` in-process (fast) and read ``capsys``; a few run the real
command in a subprocess (``python -m captum_rig.cli`` and the ``captum-rig`` script).
"""

import argparse
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from captum_rig.attr.registry import METHOD_NAMES
from captum_rig.cli import COMMANDS, build_parser, main, parse_ranks
from captum_rig.loading import load_model

from ._helpers import (
    assert_user_error,
    figure_pixels,
    files_in,
    read_csv,
    run,
    subprocess_run,
    write_png,
)


def test_parse_ranks_ranges_include_the_end_on_the_grid():
    """a:b:s includes b when b is on the grid; lists and ranges mix; sorted, unique."""
    assert parse_ranks("0:224:8")[-1] == 224, "0:224:8 must end at 224"
    assert len(parse_ranks("0:224:8")) == 29, "0, 8, ..., 224"
    assert parse_ranks("0:10:4") == [0, 4, 8], "10 is not on the grid"
    assert parse_ranks("3:5") == [3, 4, 5], "a:b has step 1, inclusive"
    assert parse_ranks("8,0:4:2, 2") == [0, 2, 4, 8], "comma lists, duplicates removed"


@pytest.mark.parametrize("text", ["a", "1:2:3:4", "5:1", "0:8:0", "-1", ",", "1.5"])
def test_parse_ranks_rejects(text):
    """Malformed --ranks are a UsageError (a ValueError)."""
    with pytest.raises(ValueError, match="--ranks"):
        parse_ranks(text)


def test_help_exits_zero(capsys):
    """--help prints usage and returns 0, for the command and every subcommand."""
    for argv in (["--help"], *([c, "--help"] for c in cli_commands())):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "usage: captum-rig" in out, (argv, code, out)


def cli_commands():
    return ["demo", "explain", "lowrank", "spectrum", "robustness"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_has_a_parser_and_a_runner(capsys, name):
    """Each COMMANDS module has add_parser and run; its --help prints usage and exits 0."""
    command = COMMANDS[name]
    assert callable(command.add_parser) and callable(command.run), name
    assert command.__name__ == f"captum_rig.cli.{name}", command.__name__
    code, out, err = run(capsys, name, "--help")
    assert code == 0, (name, code, err)
    assert out.startswith(f"usage: captum-rig {name} "), out


def test_the_registry_builds_the_parser():
    """The parser offers exactly the registered commands, in the registry's order."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS), list(sub.choices)
    for name, command in COMMANDS.items():
        args = parser.parse_args(_minimal_argv(name))
        assert args.run is command.run, name


def _minimal_argv(name):
    """The shortest command line of ``name`` that parses (its required arguments)."""
    return {
        "demo": ["demo"],
        "explain": ["explain", "a.png", "--model", "x:y"],
        "lowrank": ["lowrank", "a.png", "--rank", "1", "--out", "b.png"],
        "spectrum": ["spectrum", "--data", "d", "--model", "x:y"],
        "robustness": ["robustness", "--data", "d", "--model", "x:y"],
        "contributions": ["contributions", "a.png", "--model", "x:y"],
        "stability": ["stability", "--data", "d", "--model", "x:y"],
        "attribute": ["attribute", "--data", "d", "--model", "x:y", "--out", "m.h5"],
        "evaluate": ["evaluate", "m.h5", "--data", "d", "--model", "x:y"],
        "heatmap": ["heatmap", "--data", "d", "--model", "x:y", "--eps", "0.1"],
    }[name]


def test_methods_help_lists_the_registry(capsys):
    """explain --help names every registered method (one registry, no second list)."""
    _, out, _ = run(capsys, "explain", "--help")
    for name in METHOD_NAMES:
        assert name in out, f"{name} missing from --help"


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "required"),
        (["nonsense"], "invalid choice"),
        (["lowrank", "a.png", "--out", "x.png"], "--rank"),
        (["lowrank", "a.png", "--rank", "two", "--out", "x.png"], "invalid int"),
        (["explain", "a.png"], "the following arguments are required: --model"),
        (["explain", "a.png", "--model", "x:y", "--model", "z:w"], "one --model"),
        (["explain", "a.png", "--model", "x:y", "--weights", "1", "--weights", "2"], "twice"),
        (["explain", "a.png", "--model", "x:y", "--n-steps", "0"], "positive integer"),
        (["explain", "a.png", "--model", "x:y", "--target", "cat"], "--target"),
        (["robustness", "--model", "x:y", "--data", "d", "--eps", "big"], "4/255"),
        (["robustness", "--model", "x:y", "--data", "d", "--norm", "l1"], "invalid choice"),
        (["robustness", "--model", "x:y", "--data", "d", "--eps", "300/255"], "--eps must be in"),
        (["robustness", "--model", "x:y", "--data", "d", "--alpha", "2"], "--alpha must be in"),
        (
            ["robustness", "--model", "x:y", "--data", "d", "--name", "a", "--name", "b"],
            "--name given 2 times for 1 --model",
        ),
        (
            [
                "spectrum",
                "--model",
                "x:y",
                "--model",
                "x:z",
                "--data",
                "d",
                "--name",
                "a",
                "--name",
                "a",
            ],
            "--name labels must differ",
        ),
        (["spectrum", "--model", "x:y", "--data", "d", "--ranks", "1:"], "--ranks"),
    ],
)
def test_usage_errors_are_one_line(capsys, work, argv, match):
    """argparse errors too are one line and exit 2 (not argparse's usage block)."""
    code, out, err = run(capsys, *argv)
    assert_user_error(code, err, match)
    assert files_in(work) == ["a.png", "b.png", "grey.png", "net.pt", "net.py", "nine.pt"]


def test_version(capsys):
    """--version prints 'captum-rig 0.1.0' (the package's __version__) and exits 0."""
    import captum_rig

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"captum-rig {captum_rig.__version__}", out
    assert captum_rig.__version__ == "0.1.0", captum_rig.__version__


@pytest.mark.parametrize(
    "command, flags",
    [
        ("robustness", ["--eps", "4/255", "--steps", "20", "--norm", "linf", "--seed", "0",
                        "--batch-size", "64", "--split", "test"]),
        ("spectrum", ["--metric", "agreement", "--out", "spectrum", "--seed", "0"]),
        ("explain", ["--target", "auto", "--out", "explain.png"]),
        ("demo", ["--out", "captum-rig-demo"]),
    ],
)  # fmt: skip
def test_help_states_defaults(capsys, command, flags):
    """Each option with a default names it in --help as '(default: VALUE)'."""
    _, out, _ = run(capsys, command, "--help")
    text = " ".join(out.split()).split("options:", 1)[1]  # after the usage; unwrapped
    for flag, value in zip(flags[::2], flags[1::2]):
        block = text.split(flag + " ", 1)[1]
        assert f"(default: {value})" in block[:400], (
            f"{command} {flag}: no default in {block[:400]}"
        )


def test_help_explains_the_ranks_syntax(capsys):
    """spectrum --help shows the --ranks syntax with an example and the default."""
    _, out, _ = run(capsys, "spectrum", "--help")
    text = " ".join(out.split())
    assert "a:b[:step]" in text and "0:224:8" in text and "(default: all" in text, text


def test_seed_makes_random_weights_repeatable(capsys, work):
    """The same command twice predicts the same; the seed, not luck, fixes the weights."""
    argv = ["explain", "a.png", "--model", "net.py:make", "--methods", "saliency",
            "--target", 0, "--out", "f.png"]  # fmt: skip
    first, second = run(capsys, *argv)[1], run(capsys, *argv)[1]
    assert first == second, (first, second)
    probabilities = {run(capsys, *argv, "--seed", s)[1].split("p = ")[1][:5] for s in range(4)}
    assert len(probabilities) > 1, "different seeds should give different random models"


def test_module_entry_point_success_and_error(work):
    """python -m captum_rig.cli: exit 0 on success, 2 and one clean line on a user error."""
    ok = subprocess_run(
        [sys.executable, "-m", "captum_rig.cli", "lowrank", "a.png", "--rank", "2", "--out",
         "l.png"], work,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert Image.open(work / "l.png").size == (16, 12)
    bad = subprocess_run(
        [sys.executable, "-m", "captum_rig.cli", "explain", "grey.png", "--model", "net.py:make",
         "--out", "f.png"], work,
    )  # fmt: skip
    assert_user_error(bad.returncode, bad.stderr, "greyscale")
    assert not (work / "f.png").exists()


def test_console_script(work):
    """The installed captum-rig script runs the same main."""
    script = Path(sys.executable).with_name("captum-rig")
    assert script.exists(), "pip install -e . installs the captum-rig script beside python"
    done = subprocess_run(
        [str(script), "explain", "a.png", "--model", "net.py:make", "--methods", "rig,saliency",
         "--n-steps", "3", "--out", "fig.png"], work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert figure_pixels(work / "fig.png").std() > 10, "blank figure"
    bad = subprocess_run([str(script), "lowrank", "a.png", "--rank", "99", "--out", "x.png"], work)
    assert_user_error(bad.returncode, bad.stderr, "--rank must be in 0..12")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "argv, match",
    [
        (["explain", "a.png", "--out", "/proc/e.png"], "--out '/proc/e.png' is not a writable"),
        (["spectrum", "--data", "data", "--out", "/proc"], "--out '/proc' is not a writable"),
        (["spectrum", "--data", "data", "--out", "/proc/sp"], "--out '/proc/sp' is not a"),
        (["spectrum", "--data", "data", "--out", "a.png/sp"], "the folder of --out"),
        (["robustness", "--data", "data", "--out", "/proc/r.csv"], "--out '/proc/r.csv' is not"),
        (["robustness", "--data", "data", "--out", "a.png/r.csv"], "the folder of --out"),
    ],
)
def test_outputs_are_checked_before_any_work(capsys, work, labelled_folder, counting, argv, match):
    """An --out that cannot be written fails first, naming --out, before the model runs once."""
    spec, samples = counting
    before = files_in(work)
    code, _, err = run(capsys, *argv, "--model", spec)
    assert_user_error(code, err, match)
    assert ".tmp" not in err, "the error names the option, not a temporary file"
    assert samples() == 0, "the model ran before the output was checked"
    assert files_in(work) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "argv",
    [
        ["lowrank", "a.png", "--rank", 1, "--out", "/proc/x.png"],
        ["lowrank", "a.png", "--rank", 1, "--out", "a.png/x.png"],
        ["demo", "--out", "/proc/demo"],
    ],
)
def test_lowrank_and_demo_outputs_are_checked(capsys, work, argv):
    """lowrank and demo refuse an --out they cannot write, before reading or computing."""
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, "--out")


def test_big_images_are_refused_until_max_pixels_lifts_the_limit(capsys, work):
    """Above 4096×4096 (or --max-pixels N) an image is refused, naming --max-pixels."""
    Image.new("L", (4100, 4100)).save(work / "big.png")  # zeros: a small file
    code, _, err = run(capsys, "lowrank", "big.png", "--rank", 1, "--out", "o.png")
    assert_user_error(code, err, "4100×4100 = 16,810,000 pixels, more than --max-pixels")
    assert "--max-pixels" in err and not (work / "o.png").exists()
    write_png(work / "mid.png", 30, 40)
    code, _, err = run(capsys, "lowrank", "mid.png", "--rank", 1, "--out", "o.png",
                       "--max-pixels", 1199)  # fmt: skip
    assert_user_error(code, err, "--max-pixels")
    for limit in (1200, 0):  # exactly at the limit, and no limit
        code, _, err = run(capsys, "lowrank", "mid.png", "--rank", 1, "--out", "o.png",
                           "--max-pixels", limit)  # fmt: skip
        assert code == 0, err
    code, _, err = run(capsys, "explain", "mid.png", "--model", "net.py:make", "--out", "f.png",
                       "--max-pixels", 100)  # fmt: skip
    assert_user_error(code, err, "--max-pixels")


def test_data_and_weights_that_are_files_of_the_wrong_kind(capsys, work, labelled_folder):
    """--data FILE says it is a file and what --data takes; --weights /dev/null is no file."""
    code, _, err = run(capsys, "spectrum", "--model", "net.py:make", "--data", "a.png")
    assert_user_error(code, err, "--data 'a.png' is a file; --data takes a folder of images")
    if Path("/dev/null").exists():
        code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", "--weights",
                           "/dev/null", "--out", "f.png")  # fmt: skip
        assert_user_error(code, err, "/dev/null: it is not a regular file")
    torch.save(load_model("net.py:make"), work / "whole.pt")  # a pickled module, not a state dict
    code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", "--weights",
                       "whole.pt", "--out", "f.png")  # fmt: skip
    assert_user_error(code, err, "holds Python objects other than tensors")
    assert "torch.save(model.state_dict(), PATH)" in err and "weights_only=False" not in err


def test_help_says_a_python_model_spec_runs_code(capsys):
    """--help of every command with --model says a file or module spec runs that code."""
    for command in ("explain", "spectrum", "robustness"):
        assert main([command, "--help"]) == 0
        assert "RUNS, the module or file" in " ".join(capsys.readouterr().out.split())


def test_random_torchvision_weights_are_announced(capsys, tmp_path):
    """A torchvision model without --weights/--pretrained is said to be random, once."""
    import argparse

    import torchvision

    from captum_rig.cli import _common
    from captum_rig.loading import ModelSpec

    args = argparse.Namespace(
        num_classes=None, mean=None, std=None, no_normalize=False, image_size=None
    )
    _common.load_spec(ModelSpec.parse("torchvision:resnet18"), args, "cpu")
    assert capsys.readouterr().err.count("has random weights") == 1
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    _common.load_spec(ModelSpec.parse("torchvision:resnet18", weights=str(weights)), args, "cpu")
    assert "random weights" not in capsys.readouterr().err


def test_contributions_and_stability_help(capsys):
    """contributions and stability have --help pages naming their own options."""
    for command, flag in (("contributions", "--bands"), ("stability", "--attacks")):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and flag in out, (command, out)


# -- input errors in the command line's words, before the work ---------------------------


def test_device_without_data_is_one_line(capsys, work):
    """--device meta (a device without storage) is a usage error, not a traceback."""
    code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", "--device", "meta",
                       "--out", "f.png")  # fmt: skip
    assert_user_error(code, err, "--device must be cpu, cuda or cuda:N")
    assert "meta device holds no data" in err


def test_factory_calling_sys_exit_is_an_error(capsys, work):
    """A factory that calls sys.exit(0) is an error naming the spec, not a silent exit 0."""
    (work / "exiting.py").write_text("import sys\n\ndef make():\n    sys.exit(0)\n")
    code, _, err = run(capsys, "explain", "a.png", "--model", "exiting.py:make", "--out", "f.png")
    assert_user_error(code, err, "model spec 'exiting.py:make': the factory called sys.exit(0)")
    assert not (work / "f.png").exists()


@pytest.mark.parametrize(
    "options, match",
    [
        (
            ["--mean", "1,2", "--std", "1,1"],
            "--mean and --std must have one value per input "
            "channel (3 for this model), got 2 and 2 values",
        ),  # fmt: skip
        (["--mean", "1,2"], "pass both --mean and --std, or neither"),
        (["--mean", "0,0,0", "--std", "1,0,1"], "--std finite and > 0"),
    ],
)
def test_mean_and_std_must_fit_the_model(capsys, work, options, match):
    """--mean 1,2 on an RGB model names --mean (not the Normalize layer's x or fx's graph)."""
    code, _, err = run(capsys, "explain", "a.png", "--model", "net.py:make", *options,
                       "--out", "f.png")  # fmt: skip
    assert_user_error(code, err, match)


def test_a_model_that_cannot_take_the_input_size_is_one_line(capsys, work, labelled_folder):
    """A model whose layers do not fit the images (a Linear sized for 8×8) names the size."""
    code, _, err = run(capsys, "spectrum", "--model", "net.py:flat", "--data", "data",
                       "--image-size", 16, "--out", "sp")  # fmt: skip
    assert_user_error(code, err, "the model cannot take 3×16×16 images (mat1 and mat2 shapes")
    assert "--image-size N" in err


def test_alexnet_at_32_pixels_is_one_line(capsys, work, labelled_folder):
    """AlexNet at 32 px: a message naming the input size, not 'Output size is too small' raw."""
    code, _, err = run(capsys, "spectrum", "--model", "torchvision:alexnet", "--data", "data",
                       "--image-size", 32, "--limit", 1, "--ranks", 0, "--out", "sp")  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("captum-rig: error: the model cannot take 3×32×32 images"), err
    assert "Output size is too small" in lines[-1], err
    assert "give a larger --image-size N" in lines[-1], err


def test_fx_notes_are_left_out_of_one_line_errors():
    """torch.fx's 'While executing %...' and tlparse notes name graph nodes: not printed."""
    from captum_rig.cli._errors import cli_message

    error = RuntimeError(
        "Output size is too small\n\nWhile executing %_1 : call_module[target=1.pool]\n"
        "Original traceback:\nNone\nUse tlparse to see full graph."
    )
    message = cli_message(error)
    assert message.startswith("the model cannot take these images (Output size is too small)")
    assert "tlparse" not in message and "While executing" not in message
    assert cli_message(RuntimeError("a bug")) is None, "other RuntimeErrors stay tracebacks"


def test_library_wording_becomes_option_names(capsys, work, labelled_folder):
    """The library says convert=True, max_pixels, size=N; the command line its options."""
    code, _, err = run(capsys, "explain", "grey.png", "--model", "net.py:make", "--out", "f.png")
    assert_user_error(code, err, "grey.png is greyscale (mode L) but the model takes RGB "
                      "images; pass --convert to convert it")  # fmt: skip
    assert "convert=True" not in err and "captum-rig:" not in err[len("captum-rig:") :]
    code, _, err = run(capsys, "spectrum", "--model", "net.py:make", "--data", "a.png")
    assert_user_error(code, err, "--data")
    from captum_rig.data import image_dataset

    with pytest.raises(ValueError) as library:  # the library names its own arguments only
        image_dataset(work / "a.png")
    assert "--" not in str(library.value), str(library.value)


COUNTING_CLASSES = """
import os
from torch import nn

def make(num_classes=5):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(2),
                                     nn.Flatten(), nn.Linear(16, num_classes))

        def forward(self, x):
            with open(os.environ["SAMPLES"], "a") as f:
                f.write(f"{x.shape[0]}\\n")
            return self.net(x)
    return Net()
"""


@pytest.mark.parametrize("command", ["robustness", "spectrum-accuracy", "spectrum"])
def test_labels_the_model_cannot_output(capsys, work, labelled_folder, monkeypatch, command):
    """2 class folders for a 1-class model: commands that need labels fail before the model
    runs; spectrum without --metric accuracy drops the labels with a note (no accuracy)."""
    (work / "classes.py").write_text(COUNTING_CLASSES)
    monkeypatch.setenv("SAMPLES", str(work / "samples.txt"))
    model = ["--model", "classes.py:make", "--num-classes", 1, "--data", "data"]
    argv = {
        "robustness": ["robustness", *model, "--out", "r.csv"],
        "spectrum-accuracy": ["spectrum", *model, "--metric", "accuracy", "--out", "sp"],
        "spectrum": ["spectrum", *model, "--ranks", "0,8", "--out", "sp"],
    }[command]
    code, _, err = run(capsys, *argv)
    problem = "--data data has 2 classes (labels 0..1) but the model has 1 (0..0)"
    if command == "spectrum":
        assert code == 0, err
        assert f"note: {problem}: the labels are ignored" in err
        rows = read_csv(work / "sp" / "spectrum.csv")
        assert rows and all(row["accuracy"] == "" for row in rows), rows
    else:
        assert_user_error(code, err, problem)
        assert not (work / "samples.txt").exists(), "the model ran before the labels were checked"


def test_balanced_limit_takes_every_class_seeded(work):
    """--limit N --balanced: N images spread over the classes, the same for the same seed."""
    from captum_rig.cli._common import balanced_indices, open_data
    from captum_rig.loading import Preprocessing

    for c in range(3):
        (work / "many" / f"c{c}").mkdir(parents=True)
        for i in range(4 if c else 8):
            write_png(work / "many" / f"c{c}" / f"{i}.png", 8, 8, seed=10 * c + i)
    args = argparse.Namespace(data="many", split="test", convert=False, max_pixels=None,
                              limit=6, balanced=True, seed=3, batch_size=64,
                              num_classes=None)  # fmt: skip
    prep = Preprocessing(crop_size=8, resize_size=8, in_channels=3)
    ((_, labels),) = list(open_data(args, prep, need_labels=True)[0])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2], labels
    first = list(open_data(argparse.Namespace(**{**vars(args), "balanced": False}), prep, True)[0])
    assert first[0][1].tolist() == [0] * 6, "without --balanced: the first N (one class)"
    picks = {tuple(balanced_indices([0] * 8 + [1] * 4 + [2] * 4, 6, seed)) for seed in range(5)}
    assert len(picks) > 1, "the seed does not change the subset"
    assert balanced_indices([0] * 8 + [1] * 4, 6, 1) == balanced_indices([0] * 8 + [1] * 4, 6, 1)
    assert len(balanced_indices([0] * 2 + [1] * 9, 8, 0)) == 8, "a small class runs out"
    args.limit = None
    with pytest.raises(Exception, match="--balanced needs --limit N"):
        open_data(args, prep, need_labels=True)


@pytest.mark.parametrize("command", ["explain", "contributions", "spectrum", "robustness",
                                     "stability", "attribute", "evaluate", "heatmap"])  # fmt: skip
def test_model_is_required_in_the_usage_and_bare_names_get_a_hint(capsys, work, command):
    """--model shows as required in the usage line; 'resnet18' gets 'did you mean
    torchvision:resnet18' in every command, before its other checks."""
    if command not in COMMANDS:
        pytest.skip(f"{command} is not registered")
    code, out, _ = run(capsys, command, "--help")
    usage = " ".join(out.split("\n\n")[0].split())
    assert code == 0 and " --model SPEC" in usage and "[--model SPEC]" not in usage, usage
    code, _, err = run(capsys, command, "--model", "resnet18")
    assert_user_error(code, err, "did you mean torchvision:resnet18?")


def test_lowrank_image_has_help(capsys):
    """lowrank --help says what IMAGE is."""
    code, out, _ = run(capsys, "lowrank", "--help")
    assert code == 0 and "image file to truncate" in " ".join(out.split()), out
