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
