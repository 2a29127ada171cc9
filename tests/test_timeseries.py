"""Time series of tracks, angle helpers and the Fig. 5 plots, on known tracks."""

import doctest
import importlib

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from atomstat.plot import (  # noqa: E402
    plot_angle_distribution,
    plot_angle_series,
    plot_drift,
    plot_dumbbells,
)
from atomstat.timeseries import (  # noqa: E402
    angle_centre,
    axial_mean,
    frame_summary,
    time_series,
    unwrap_angles,
    wrap_angles,
)

timeseries_module = importlib.import_module("atomstat.timeseries")


@pytest.fixture
def tracks():
    """Three dumbbells over five frames; #1 turns through the 0/180 wrap, #2 is seen twice."""
    rows = []
    for f in range(5):
        rows.append({"particle": 0, "frame": f, "x": 10.0 + f, "y": 10.0, "angle": 90.0 + f})
        rows.append(
            {"particle": 1, "frame": f, "x": 40.0 + f, "y": 30.0, "angle": (176 + 2 * f) % 180}
        )
        if f in (1, 3):
            rows.append({"particle": 2, "frame": f, "x": 60.0 + f, "y": 50.0, "angle": 45.0})
    table = pd.DataFrame(rows).assign(separation=12.0, area=100.0)
    table.attrs["drift"] = {
        "frame": list(range(5)),
        "dx": [float(f) for f in range(5)],
        "dy": [0.0] * 5,
    }
    return table


def test_doctests():
    assert doctest.testmod(timeseries_module).failed == 0


def test_time_series_is_tidy_and_unwrapped(tracks):
    series = time_series(tracks)
    assert list(series.columns[:6]) == ["particle", "frame", "x", "y", "x_aligned", "y_aligned"]
    assert not series.duplicated(["particle", "frame"]).any()
    assert series.equals(series.sort_values(["particle", "frame"]).reset_index(drop=True))
    one = series[series.particle == 1]
    assert one.angle.tolist() == [176.0, 178.0, 0.0, 2.0, 4.0]
    assert one.angle_unwrapped.tolist() == [176.0, 178.0, 180.0, 182.0, 184.0]
    assert (series.x_aligned[series.particle == 0] == 10.0).all()  # the drift taken out
    assert {"separation", "area"} <= set(series.columns)
    assert series.attrs["drift"] == tracks.attrs["drift"]


def test_time_series_filters_and_selects(tracks):
    series = time_series(tracks, ["angle"], min_frames=3)
    assert sorted(series.particle.unique()) == [0, 1]
    assert "area" not in series and "angle_unwrapped" in series
    assert "angle_unwrapped" not in time_series(tracks, "angle", unwrap=False)
    with pytest.raises(ValueError, match="particle"):
        time_series(tracks.drop(columns="particle"))
    with pytest.raises(ValueError, match="spin"):
        time_series(tracks, ["spin"])
    with pytest.raises(ValueError, match="min_frames"):
        time_series(tracks, min_frames=0)


def test_angle_helpers():
    walk = np.cumsum(np.r_[170.0, np.full(20, 1.5)])  # 170 .. 200 degrees, turning steadily
    assert np.allclose(unwrap_angles(walk % 180), walk)
    assert np.allclose(unwrap_angles(np.deg2rad(walk) % np.pi, period=np.pi), np.deg2rad(walk))
    assert abs(axial_mean([175.0, 179.0, 3.0, 7.0]) - 1.0) < 1e-9
    wrapped = wrap_angles([175.0, 179.0, 3.0, 7.0])
    assert np.allclose(wrapped, [-5.0, -1.0, 3.0, 7.0])
    assert np.allclose(wrap_angles([10.0, 100.0], centre=90.0), [10.0, 100.0])
    assert np.isnan(axial_mean([]))
    assert np.isclose(angle_centre([179.0, 3.0]), 1.0)  # near 0/180: centred on 0
    assert np.isclose(angle_centre([88.0, 94.0]), 91.0)
    with pytest.raises(ValueError, match="period"):
        unwrap_angles([1.0], period=0)


def test_frame_summary(tracks):
    summary = frame_summary(tracks)
    assert summary.index.tolist() == list(range(5))
    assert summary.loc[0, "count"] == 2 and summary.loc[1, "count"] == 3
    with pytest.raises(ValueError, match="frame"):
        frame_summary(tracks.drop(columns="frame"))


def test_plot_dumbbells_draws_bars_along_the_angles(tracks):
    first = tracks[tracks.frame == 0].copy()
    first.attrs["reference"] = 10.0  # angles relative to a direction at 10 degrees
    ax = plot_dumbbells(np.zeros((64, 80)), first, highlight=[1])
    segments = ax.collections[0].get_segments()
    assert len(segments) == len(first)
    for seg, angle in zip(segments, first.angle + 10.0, strict=True):
        (x0, y0), (x1, y1) = seg
        assert np.isclose(np.degrees(np.arctan2(-(y1 - y0), x1 - x0)) % 180, angle % 180)
        assert np.isclose(np.hypot(x1 - x0, y1 - y0), 1.6 * 12.0)
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1"]
    plt.close("all")
    with pytest.raises(ValueError, match="2-D"):
        plot_dumbbells(np.zeros((2, 8, 8)), first)


def test_angle_plots(tracks):
    ax = plot_angle_distribution(tracks)
    assert len(ax.collections) >= 5  # a violin per frame
    ax = plot_angle_distribution(tracks, kind="box")
    series_ax = plot_angle_series(tracks, [1])
    (line,) = series_ax.get_lines()
    assert np.allclose(np.diff(line.get_ydata()), 2.0)  # continuous through 0/180
    assert line.get_ydata()[0] == -4.0  # near 0/180: shown around 0
    longest = plot_angle_series(tracks, n=2)
    assert [t.get_text() for t in longest.get_legend().get_texts()] == ["#0", "#1"]
    drift_ax = plot_drift(pd.DataFrame({"dx": [0.0, 5.0], "dy": [0.0, 2.0]}))
    assert drift_ax.get_lines()[0].get_xdata().tolist() == [0.0, 5.0]
    plt.close("all")
    with pytest.raises(ValueError, match="kind"):
        plot_angle_distribution(tracks, kind="pie")
    with pytest.raises(ValueError, match="particle 7"):
        plot_angle_series(tracks, [7])
