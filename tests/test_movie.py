"""simulate_movie: the truth is what the frames show; stacks are analysed chunk by chunk."""

import doctest

import numpy as np
import pandas as pd
import pytest

import atomstat
import atomstat.movie
from atomstat.movie import dumbbell_lattice, simulate_movie

INF, NAN = float("inf"), float("nan")


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(20, rng=11)


def test_doctests():
    assert doctest.testmod(atomstat.movie).failed == 0


def test_frames_and_truth_shapes(movie):
    assert movie.frames.shape == movie.clean.shape == (20, 256, 256)
    assert movie.frames.dtype == np.float32
    assert list(movie.drift.index) == list(range(20))
    per_frame = movie.dumbbells.groupby("frame").size()
    assert per_frame.index.tolist() == list(range(20))
    assert 50 <= per_frame.median() <= 65  # the 50-60 dumbbells
    assert movie.dumbbells.index.name == "dumbbell_id"
    assert atomstat.simulate_movie is simulate_movie


def test_columns_follow_angle_and_separation(movie):
    d = movie.dumbbells
    vec = d[["x_b", "y_b"]].to_numpy() - d[["x_a", "y_a"]].to_numpy()
    assert np.allclose(np.hypot(*vec.T), 12.0)
    angle = np.degrees(np.arctan2(-vec[:, 1], vec[:, 0])) % 180  # counter-clockwise as displayed
    assert np.allclose(angle, d["angle"])
    centre = (d[["x_a", "y_a"]].to_numpy() + d[["x_b", "y_b"]].to_numpy()) / 2
    assert np.allclose(centre, d[["x", "y"]].to_numpy())
    assert ((d.angle >= 0) & (d.angle < 180)).all()


def test_clean_frames_peak_on_the_columns(movie):
    atoms = movie.atoms[movie.atoms.frame == 3]
    inner = atoms[atoms.x.between(5, 250) & atoms.y.between(5, 250)]
    xi, yi = np.round(inner.x).astype(int), np.round(inner.y).astype(int)
    assert np.all(movie.clean[3][yi, xi] > 0.9)  # column peak 1
    assert movie.clean[3].max() < 1.1  # columns do not overlap much
    noisy = movie.frames[3][yi, xi]
    assert 80 < np.median(noisy) < 150  # dose 100 + background


def test_angles_random_walk_about_two_degrees(movie):
    d = movie.dumbbells.sort_values(["dumbbell", "frame"])
    same = d.dumbbell.to_numpy()[1:] == d.dumbbell.to_numpy()[:-1]
    step = (np.diff(d.angle.to_numpy()) + 90) % 180 - 90
    assert 1.6 < np.std(step[same]) < 2.4


def test_drift_about_12_px_in_a_slowly_turning_direction(movie):
    steps = np.diff(movie.drift[["dx", "dy"]].to_numpy(), axis=0)
    speed = np.hypot(*steps.T)
    assert speed.max() <= 17.0 + 1e-9
    assert 10 < speed.mean() < 14
    heading = np.degrees(np.arctan2(steps[:, 1], steps[:, 0]))
    turn = (np.diff(heading) + 180) % 360 - 180
    assert np.abs(turn).max() < 25


def test_dumbbells_enter_and_leave(movie):
    ids = movie.dumbbells.groupby("frame")["dumbbell"].apply(set)
    assert ids[0] - ids[19], "some dumbbells leave the field of view"
    assert ids[19] - ids[0], "some dumbbells enter the field of view"
    # A true id is one place of the sample: its drift-corrected centre stays put.
    d = movie.dumbbells.join(movie.drift, on="frame")
    spread = (d.x - d.dx).groupby(d.dumbbell).std().max()
    assert spread < 0.5


def test_rng_reproducible_and_varied():
    a, b = simulate_movie(2, shape=(64, 64), rng=3), simulate_movie(2, shape=(64, 64), rng=3)
    c = simulate_movie(2, shape=(64, 64), rng=4)
    assert np.array_equal(a.frames, b.frames)
    pd.testing.assert_frame_equal(a.dumbbells, b.dumbbells)
    assert not np.array_equal(a.frames, c.frames)


def test_dumbbell_lattice_is_centred_rectangular():
    pts = dumbbell_lattice((400, 400), 40.0, rng=0)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts).query(pts, k=2)
    assert np.allclose(np.median(d[:, 1]), np.hypot(20, 20 * np.sqrt(2)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_frames": 0}, "n_frames"),
        ({"shape": (8, 64)}, "shape"),
        ({"separation": -1.0}, "separation"),
        ({"spacing": 20.0}, "spacing"),
        ({"dose": 0.0}, "dose"),
        ({"drift": 20.0}, "drift"),
        ({"angle_spread": -1.0}, "angle_spread must be a finite number >= 0"),
        ({"angle_step": NAN}, "angle_step must be"),
        ({"jitter": -1.0}, "jitter must be a finite number in"),
        ({"jitter": 100.0}, r"jitter must be .* \(the spacing\)"),
        ({"background": NAN}, "background must be a finite number"),
        ({"background": -1.0}, "background must be"),
        ({"turn": NAN}, "turn must be a finite number"),
        ({"turn": -5.0}, "turn must be"),
        ({"angle": INF}, "angle must be"),
        ({"rotation": NAN}, "rotation must be"),
        ({"dose": 1e30}, "dose must be"),
        ({"sigma": 40.0}, r"sigma must be .*\(half the smaller side\)"),
        ({"drift_max": INF, "drift": 12.0}, "drift_max must be"),
        ({"shape": (64.5, 64)}, "shape must be"),
        # 1000 px per frame takes the view 16 frame widths away (2e6 px allocated 19 GiB)
        ({"drift": 1000.0, "drift_max": 2000.0}, "at most 10 frame widths"),
        ({"n_frames": 41, "drift": 17.0}, "moves the sample 680 px: at most 10 frame widths"),
    ],
)
def test_bad_arguments(kwargs, name):
    args = {"n_frames": 2, "shape": (64, 64)} | kwargs
    with pytest.raises(ValueError, match=name):
        simulate_movie(**args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_frames": 2.0}, "n_frames must be an integer"), ({"rng": "x"}, "rng must be None")],
)
def test_bad_argument_types(kwargs, name):
    with pytest.raises(TypeError, match=name):
        simulate_movie(**({"n_frames": 2, "shape": (64, 64)} | kwargs))


def test_the_longest_allowed_drift_still_simulates():
    movie = simulate_movie(41, shape=(64, 64), drift=16.0, rng=0)  # 640 px: 10 frame widths
    assert movie.frames.shape == (41, 64, 64)


def test_too_many_dumbbells_are_refused_before_allocating(monkeypatch):
    import atomstat.lattices as lattices

    monkeypatch.setattr(lattices, "MAX_POINTS", 2_000)
    with pytest.raises(ValueError, match="dumbbell lattice of spacing 3 px .*raise spacing"):
        simulate_movie(2, shape=(64, 64), separation=1.0, spacing=3.0, sigma=1.0, jitter=0.0)
    with pytest.raises(ValueError, match="dumbbells over 40 frames .*lower n_frames"):
        simulate_movie(40, shape=(200, 200), drift=1.0, rng=0)
    with pytest.raises(ValueError, match="raise spacing"):
        dumbbell_lattice((400, 400), 2.0)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (((100, 100), 0.0), ValueError, "spacing must be a finite number > 0"),
        (((NAN, 100), 40.0), ValueError, r"size\[0\] must be"),
        (((100, 100), 40.0, NAN), ValueError, "rotation must be"),
    ],
)
def test_dumbbell_lattice_refuses_bad_arguments(args, error, match):
    size, spacing, *rotation = args
    with pytest.raises(error, match=match):
        dumbbell_lattice(size, spacing, rotation=rotation[0] if rotation else 0.0)


# ------------------------------------------------------------------ stacks: lazy, chunked


class RecordingStack:
    """An array-like stack that records how many frames each read asks for."""

    def __init__(self, data):
        self.data = data
        self.reads = []

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(1 if np.ndim(out) == 2 else len(out))
        return out


def test_analyze_reads_a_long_stack_in_bounded_chunks(threshold_model):
    frames = simulate_movie(40, shape=(64, 64), dose=400, rng=5).frames
    stack = RecordingStack(frames)
    atoms = atomstat.analyze(stack, model=threshold_model)
    assert max(stack.reads) <= 16
    assert sum(stack.reads) <= len(frames) + 1  # each frame read once (plus frame 0 for sigma)
    assert sorted(atoms.frame.unique()) == list(range(40))


@pytest.mark.parametrize("suffix", [".npy", ".hspy"])
def test_lazy_stack_gives_the_eager_result(tmp_path, threshold_model, suffix):
    frames = simulate_movie(20, shape=(96, 96), dose=400, rng=6).frames.astype(np.uint16)
    path = tmp_path / f"movie{suffix}"
    if suffix == ".npy":
        np.save(path, frames)
    else:
        import hyperspy.api as hs

        hs.signals.Signal2D(frames).save(path)
    lazy = atomstat.load(path, lazy=True)
    assert lazy._lazy and lazy.data.shape == (20, 96, 96)
    eager = atomstat.analyze(atomstat.load(path), model=threshold_model)
    from_lazy = atomstat.analyze(lazy, model=threshold_model)
    assert len(eager) > 20 * 10
    pd.testing.assert_frame_equal(from_lazy, eager)
