"""The command line: analyze writes a table and an overlay per file and skips bad files."""

import numpy as np
import pytest

from atomstat.cli import main
from atomstat.export import read_csv
from atomstat.simulate import Stem, simulate_lattice


def test_analyze_writes_table_and_overlay_and_skips_bad_files(tmp_path):
    sim = simulate_lattice(
        "hexagonal", shape=(160, 160), spacing=16, sigma=2.2, imaging=Stem(dose=100), rng=7
    )
    good = tmp_path / "lattice.npy"
    np.save(good, sim.image)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    code = main(["analyze", str(good), str(bad), "--out", str(out)])
    assert code == 1  # one file failed, the other went through
    atoms = read_csv(out / "lattice_atoms.csv")
    assert abs(len(atoms) - len(sim.atoms)) <= 0.03 * len(sim.atoms)
    assert atoms.attrs["model"] == "universal"
    png = (out / "lattice_overlay.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "broken_atoms.csv").exists()


def test_analyze_refuses_a_bad_threshold(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "x.npy", "--out", "o", "--threshold", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "model", "expected"),
    [
        ("auto", "stm", True),
        ("off", "stm", False),
        ("on", "universal", True),
        ("auto", "universal", False),
    ],
)
def test_analyze_split_follows_the_flag(tmp_path, flag, model, expected):
    from atomstat.simulate import Stm

    sim = simulate_lattice("square", shape=(96, 96), spacing=12, sigma=2.4, imaging=Stm(), rng=3)
    path = tmp_path / "scan.npy"
    np.save(path, sim.image)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--out", str(out), "--model", model, "--split", flag]) == 0
    atoms = read_csv(out / "scan_atoms.csv")
    assert str(atoms.attrs["split"]) == str(expected)
    assert len(atoms) > 0.9 * len(sim.atoms)


def test_out_must_be_a_folder(tmp_path, caplog):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["analyze", "x.npy", "--out", str(afile)]) == 1
    assert f"--out {afile} is a file, not a folder" in caplog.text
    assert main(["analyze", "x.npy", "--out", str(afile / "sub")]) == 1
    assert "cannot make the folder" in caplog.text
    assert afile.read_text() == "keep me"


def test_evaluate_checks_the_model_and_its_record_before_evaluating(tmp_path, monkeypatch, caplog):
    import shutil

    import atomstat.fcn.card
    from atomstat.fcn.predict import model_path

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated although the card cannot be written")

    monkeypatch.setattr(atomstat.fcn.card, "evaluate", no_evaluation)
    assert main(["evaluate", str(tmp_path / "missing.keras")]) == 1
    assert "model file" in caplog.text and "does not exist" in caplog.text
    shipped = tmp_path / "universal.keras"  # a real model, without its training record
    shutil.copy(model_path("universal"), shipped)
    assert main(["evaluate", str(shipped)]) == 1
    assert "training record" in caplog.text and "universal.train.json" in caplog.text
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    (tmp_path / "fake.train.json").write_text("{}")
    assert main(["evaluate", str(fake)]) == 1
    last = caplog.records[-1].getMessage()  # the loader's own reason follows
    assert last.startswith(f"cannot evaluate {fake}: ") and "model" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fake.keras", "fake.train.json", "universal.keras"
    ]  # fmt: skip


@pytest.mark.parametrize("images", ["0", "-3", "x"])
def test_evaluate_refuses_no_images(images, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "m.keras", "--images", images])
    assert "--images" in capsys.readouterr().err


def test_card_evaluate_refuses_no_images():
    from atomstat.fcn.card import evaluate

    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_images must be an integer >= 1"):
            evaluate("m.keras", n_images=n)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"steps": -1}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"width": 0}, "width must be an integer >= 1"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"patch": 3}, "patch must be an integer >= 32"),
        ({"patch": 34}, "patch must be a multiple of 4"),
        ({"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"stm_fraction": 2.0}, r"stm_fraction must be a finite number in \[0, 1\] \(a fraction\)"),
        ({"upsampled": -0.1}, "upsampled must be a finite number in"),
        ({"dose": (5.0, -1.0)}, "dose must be a .* 0 < low <= high"),
        ({"dose": (0.0, 10.0)}, "dose must be"),
        ({"dose": 5.0}, r"dose must be a \(low, high\) pair"),
        ({"sigma": (3.0, 1.0)}, "sigma must be"),
        ({"stm_spacing": (float("nan"), 5.0)}, "stm_spacing must be"),
        ({"init": "missing.ckpt.keras"}, "init checkpoint missing.ckpt.keras does not exist"),
    ],
)
def test_train_config_refuses_bad_settings(setting, message):
    from atomstat.fcn.train import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**setting)


def test_train_config_accepts_the_defaults_and_edge_values():
    from atomstat.fcn.train import TrainConfig

    TrainConfig()
    TrainConfig(patch=32, stm_fraction=1.0, upsampled=0.0, dose=(50.0, 50.0), init="")


def test_train_cli_refuses_bad_settings_without_training(tmp_path, monkeypatch, caplog, capsys):
    import atomstat.fcn.train

    def no_training(*args, **kwargs):
        raise AssertionError("trained with a bad setting")

    monkeypatch.setattr(atomstat.fcn.train, "train", no_training)
    out = str(tmp_path / "m")
    assert main(["train", "--out", out, "--patch", "3"]) == 1
    assert "cannot train: patch must be an integer >= 32, got 3" in caplog.text
    assert main(["train", "--out", out, "--stm-fraction", "2"]) == 1
    assert "stm_fraction must be a finite number in [0, 1] (a fraction)" in caplog.text
    with pytest.raises(SystemExit):
        main(["train", "--out", out, "--steps", "-1"])
    assert "--steps: must be at least 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
