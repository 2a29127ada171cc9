"""track: identities survive drift of many spacings; the drift comes back; the CLI writes it all."""

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import atomstat
from atomstat.movie import simulate_movie
from atomstat.register import align_frames, estimate_drift
from atomstat.table import make_atoms
from atomstat.track import get_drift, track

track_module = importlib.import_module("atomstat.track")  # atomstat.track is the function
register_module = importlib.import_module("atomstat.register")


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(20, rng=21)  # about 12 px drift per frame, dumbbells 35 px apart


def truth_table(movie, *, noise=0.1, drop=0.03, rng=0):
    """The true dumbbells as features, with position noise and a few missed per frame."""
    rng = np.random.default_rng(rng)
    d = movie.dumbbells[movie.dumbbells.inside]
    d = d[rng.random(len(d)) >= drop]
    xy = d[["x", "y"]].to_numpy() + rng.normal(0, noise, (len(d), 2))
    return make_atoms(
        {"frame": d.frame.to_numpy(), "x": xy[:, 0], "y": xy[:, 1], "truth": d.dumbbell.to_numpy()}
    )


def link_scores(tracks, truth="truth"):
    """(share of found links that join the same true feature, share of true links found)."""
    t = tracks.sort_values(["particle", "frame"])
    same = t.particle.to_numpy()[1:] == t.particle.to_numpy()[:-1]
    right = t[truth].to_numpy()[1:] == t[truth].to_numpy()[:-1]
    u = tracks.sort_values([truth, "frame"])
    true_link = u[truth].to_numpy()[1:] == u[truth].to_numpy()[:-1]
    kept = u.particle.to_numpy()[1:] == u.particle.to_numpy()[:-1]
    return (same & right).sum() / same.sum(), (true_link & kept).sum() / true_link.sum()


def test_doctests():
    assert doctest.testmod(track_module).failed == 0
    assert doctest.testmod(register_module).failed == 0


def test_plain_linking_fails_on_this_drift(movie):
    import trackpy

    table = truth_table(movie)
    trackpy.quiet()
    plain = trackpy.link(table[["x", "y", "frame"]].copy(), 12.0, memory=2)
    precision, recall = link_scores(table.assign(particle=plain.particle))
    assert recall < 0.8  # the premise: drift beyond what nearest-centre linking survives


def test_points_only_tracking_keeps_every_identity(movie):
    table = truth_table(movie)
    tracks = track(table)
    precision, recall = link_scores(tracks)
    assert precision == 1.0 and recall >= 0.995
    drift = get_drift(tracks)
    assert np.abs(drift.to_numpy() - movie.drift.to_numpy()).max() < 0.5
    assert tracks.index.equals(table.index) and (tracks.x == table.x).all()


def test_image_registration_recovers_the_drift(movie):
    table = truth_table(movie, rng=1)
    tracks = track(table, images=movie.frames)
    assert min(link_scores(tracks)) >= 0.995
    drift = estimate_drift(table, movie.frames)
    assert np.abs(drift[["dx", "dy"]].to_numpy() - movie.drift.to_numpy()).max() < 0.5
    assert (drift["matched"].iloc[1:] > 0.9).all()
    assert tracks.attrs["memory"] == 2 and tracks.attrs["search_range"] > 5


def test_registration_beats_lattice_aliases():
    # In this movie plain cross-correlation takes a lattice alias for the true drift.
    from skimage.registration import phase_cross_correlation

    movie = simulate_movie(20, rng=5)
    true = np.diff(movie.drift[["dx", "dy"]].to_numpy(), axis=0)
    plain = np.array(
        [
            -phase_cross_correlation(a, b, normalization=None)[0][::-1]
            for a, b in zip(movie.frames[:-1], movie.frames[1:], strict=True)
        ]
    )
    assert (np.hypot(*(plain - true).T) > 10).any()
    no_features = atomstat.empty_atoms()
    drift = estimate_drift(no_features, movie.frames)  # the images alone
    assert np.abs(drift[["dx", "dy"]].to_numpy() - movie.drift.to_numpy()).max() < 2.0


def test_images_alone_register_frames_without_features(movie):
    table = truth_table(movie)
    sparse = table[table.frame != 5]  # frame 5: nothing found
    drift = estimate_drift(sparse, movie.frames)
    assert list(drift.index) == list(range(20))
    assert np.abs(drift[["dx", "dy"]].to_numpy() - movie.drift.to_numpy()).max() < 1.5
    points = estimate_drift(sparse)  # without images, frame 5 is interpolated
    assert np.isfinite(points.loc[5, ["dx", "dy"]]).all()


def test_memory_bridges_missed_frames(movie):
    table = truth_table(movie, drop=0.0)
    counts = table.groupby("truth").frame.agg(["min", "max", "size"])
    victim = counts[counts["size"] == 20].index[0]  # seen in every frame
    gap = table[~((table.truth == victim) & table.frame.isin([6, 7]))]
    kept = track(gap, memory=2)
    assert kept.loc[kept.truth == victim, "particle"].nunique() == 1
    lost = track(gap, memory=0)
    assert lost.loc[lost.truth == victim, "particle"].nunique() == 2


def test_columns_tracked_through_drift_of_a_column_spacing(movie):
    atoms = movie.atoms[movie.atoms.x.between(3, 252) & movie.atoms.y.between(3, 252)]
    rng = np.random.default_rng(3)
    xy = atoms[["x", "y"]].to_numpy() + rng.normal(0, 0.1, (len(atoms), 2))
    table = make_atoms(
        {
            "frame": atoms.frame.to_numpy(),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "truth": atoms.dumbbell.to_numpy() * 2 + atoms.column.to_numpy(),
        }
    )
    tracks = track(table, images=movie.frames)
    assert min(link_scores(tracks)) >= 0.995  # columns 12 px apart, drift about 12 px


def test_particles_numbered_by_first_appearance(movie):
    tracks = track(truth_table(movie))
    first = tracks.sort_values(["frame", "y", "x"]).drop_duplicates("particle")
    assert first.particle.tolist() == list(range(tracks.particle.nunique()))
    assert tracks.particle.dtype == np.int64


def test_align_frames_holds_the_sample_still(movie):
    aligned = align_frames(movie.clean[:6], movie.drift, fill=np.nan)
    both = np.isfinite(aligned[0]) & np.isfinite(aligned[5])
    assert both.sum() > 0.5 * aligned[0].size
    assert np.corrcoef(aligned[0][both], aligned[5][both])[0, 1] > 0.9
    assert np.corrcoef(movie.clean[0][both], movie.clean[5][both])[0, 1] < 0.5


def test_empty_and_schema():
    empty = atomstat.empty_atoms()
    tracks = track(empty, search_range=5.0, drift=pd.DataFrame({"dx": [], "dy": []}))
    assert "particle" in tracks and len(tracks) == 0
    with pytest.raises(ValueError, match="no frame holds two features"):
        track(make_atoms({"frame": [0, 1], "x": [1.0, 2.0], "y": [1.0, 2.0]}))


def test_bad_arguments(movie):
    table = truth_table(movie)
    with pytest.raises(ValueError, match="memory"):
        track(table, memory=-1)
    with pytest.raises(ValueError, match="search_range"):
        track(table, search_range=0.0)
    with pytest.raises(ValueError, match="images has 5 frames"):
        track(table, images=movie.frames[:5])
    with pytest.raises(ValueError, match="drift has no row"):
        track(table, drift=movie.drift.iloc[:3])
    with pytest.raises(ValueError, match="attrs"):
        get_drift(table)
    with pytest.raises(ValueError, match="stack"):
        align_frames(movie.frames[0], movie.drift)


def test_cli_track_writes_tables_and_figures(tmp_path, threshold_model):
    from atomstat.cli import main
    from atomstat.export import read_csv

    movie = simulate_movie(5, shape=(128, 128), dose=2000, rng=8)
    path = tmp_path / "movie.npy"
    np.save(path, movie.frames)
    model = tmp_path / "threshold.keras"
    threshold_model.save(model)
    out = tmp_path / "out"
    args = [str(path), "--dumbbells", "--out", str(out), "--model", str(model)]
    assert main(["track", *args, "--reference", "90"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"movie_{n}" for n in ("angles.png", "drift.csv", "overlay.png", "tracks.csv")]
    tracks = read_csv(out / "movie_tracks.csv")
    assert {"particle", "angle", "frame", "atom_a"} <= set(tracks.columns)
    assert tracks.attrs["reference"] == 90.0
    # every tracked dumbbell is a true one (those cut by the border included), and
    # nearly every dumbbell wholly inside the frame is tracked
    truth = movie.dumbbells
    for frame, rows in tracks.groupby("frame"):
        true = truth[truth.frame == frame]
        dist, idx = cKDTree(true[["x", "y"]].to_numpy()).query(rows[["x", "y"]].to_numpy())
        assert dist.max() < 2.0
        assert len(set(idx)) == len(idx)  # no dumbbell found twice
        assert len(set(idx) & set(np.flatnonzero(true.inside))) >= 0.95 * true.inside.sum()
    drift = read_csv(out / "movie_drift.csv")
    assert np.abs(drift[["dx", "dy"]].to_numpy() - movie.drift.to_numpy()).max() < 0.5
    assert main(["track", str(tmp_path / "missing.npy"), "--out", str(out)]) == 1


def test_search_range_too_large_is_a_value_error():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (40, 2))
    table = make_atoms({"frame": np.repeat([0, 1], 40), "x": np.tile(pts[:, 0], 2),
                        "y": np.tile(pts[:, 1], 2)})  # fmt: skip
    still = pd.DataFrame({"dx": [0.0, 0.0], "dy": [0.0, 0.0]})
    with pytest.raises(ValueError, match=r"search_range 1e\+06 px is too large .*spacing"):
        track(table, search_range=1e6, drift=still)
    assert track(table, search_range=5.0, drift=still).particle.nunique() == 40


def test_nan_positions_and_drift_are_refused(movie):
    table = truth_table(movie)
    holes = table.assign(x=np.where(np.arange(len(table)) % 5 == 0, np.nan, table.x))
    with pytest.raises(ValueError, match="table column 'x' holds NaN or inf"):
        track(holes)
    with pytest.raises(ValueError, match="table column 'y' holds NaN or inf"):
        track(table.assign(y=np.inf), drift=movie.drift)
    with pytest.raises(ValueError, match="drift column 'dx' holds NaN or inf"):
        track(table, drift=movie.drift.assign(dx=np.nan))
    with pytest.raises(ValueError, match="drift column 'dy' must hold numbers"):
        track(table, drift=movie.drift.assign(dy="a"))


def test_cli_track_refuses_unknown_particles_and_a_file_as_out(tmp_path, threshold_model, caplog):
    from atomstat.cli import main

    movie = simulate_movie(3, shape=(96, 96), dose=2000, rng=8)
    path = tmp_path / "movie.npy"
    np.save(path, movie.frames)
    model = tmp_path / "threshold.keras"
    threshold_model.save(model)
    out = tmp_path / "out"
    args = ["track", str(path), "--dumbbells", "--model", str(model), "--out", str(out)]
    assert main([*args, "--particles", "0,999"]) == 1
    assert "--particles: no track 999" in caplog.text
    assert not list(out.iterdir())  # refused before anything was written
    assert main(["track", str(path), "--model", str(model), "--out", str(out),
                 "--search-range", "1e6"]) == 1  # fmt: skip
    assert "too large" in caplog.text
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["track", str(path), "--out", str(afile)]) == 1
    assert f"--out {afile} is a file, not a folder" in caplog.text
