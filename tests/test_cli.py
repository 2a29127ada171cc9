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
