"""Tests for atomstat.outliers: anomalies and clusters on descriptor tables with known truth.

The tables are drawn like a real lattice's: a tight host population and a few
percent of two defect kinds whose descriptors differ the way the physics says
(a lighter dopant: smaller blob, dimmer; an adatom: off-site, so a short
nearest-neighbour distance, dim, less round).
"""

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.outliers import add_anomalies, anomaly_scores, cluster, find_anomalies
from atomstat.table import make_atoms

ALL = ("area", "circularity", "intensity")


def lattice_table(n_host=1500, n_dopant=30, n_adatom=15, rng=0):
    """Descriptor table with a ``species`` column (the truth), rows shuffled."""
    rng = np.random.default_rng(rng)
    parts = {
        "host": (n_host, (20.0, 1.0), (0.965, 0.008), (1000.0, 30.0), (14.0, 0.3)),
        "dopant": (n_dopant, (10.0, 0.7), (0.962, 0.008), (520.0, 25.0), (14.0, 0.3)),
        "adatom": (n_adatom, (13.0, 2.0), (0.90, 0.03), (700.0, 40.0), (7.0, 0.5)),
    }
    cols = {k: [] for k in ("area", "circularity", "intensity", "nn_distance", "species")}
    for species, (n, area, circ, inten, nn) in parts.items():
        cols["area"].append(rng.normal(*area, n))
        cols["circularity"].append(np.clip(rng.normal(*circ, n), 0, 1))
        cols["intensity"].append(rng.normal(*inten, n))
        cols["nn_distance"].append(rng.normal(*nn, n))
        cols["species"].append(np.full(n, species, dtype=object))
    data = {k: np.concatenate(v) for k, v in cols.items()}
    order = rng.permutation(len(data["area"]))
    data = {k: v[order] for k, v in data.items()}
    n = len(order)
    data["x"], data["y"] = rng.uniform(0, 500, n), rng.uniform(0, 500, n)
    return make_atoms(data)


def recall_precision(flags, atoms, positive=("dopant", "adatom")):
    truth = atoms["species"].isin(positive).to_numpy()
    hit = (flags.to_numpy() & truth).sum()
    return hit / truth.sum(), hit / max(flags.sum(), 1)


# ----------------------------------------------------------------------------- anomalies


@pytest.mark.parametrize("method", ["ocsvm", "iforest", "lof"])
def test_every_method_finds_dopants_and_adatoms_with_defaults(method):
    atoms = lattice_table(rng=1)
    flags = find_anomalies(atoms, ALL, method=method, rng=0)
    recall, precision = recall_precision(flags, atoms)
    assert recall >= 0.95
    assert precision >= 0.9


def test_default_columns_find_dopants_and_adatoms():
    atoms = lattice_table(rng=2)
    flags = find_anomalies(atoms)
    assert flags.attrs["columns"] == ["intensity", "area"]
    assert flags.attrs["method"] == "zscore"
    recall, precision = recall_precision(flags, atoms)
    assert recall >= 0.9
    assert precision >= 0.9


def test_default_columns_leave_out_a_missing_intensity():
    atoms = lattice_table(rng=2).drop(columns="intensity")
    flags = find_anomalies(atoms)
    assert flags.attrs["columns"] == ["area", "circularity"]
    recall, _ = recall_precision(flags, atoms, positive=("dopant",))
    assert recall >= 0.9
    # what is flagged besides dopants is adatoms (less round), not hosts
    assert (atoms.species[flags] == "host").sum() <= 3


def test_a_clean_lattice_has_no_anomalies():
    atoms = lattice_table(n_dopant=0, n_adatom=0, rng=3)
    for method in ("zscore", "ocsvm", "iforest", "lof"):
        assert find_anomalies(atoms, ALL, method=method).sum() <= 2, method


def test_the_share_found_follows_the_data_not_a_fixed_fraction():
    few = find_anomalies(lattice_table(n_dopant=10, n_adatom=0, rng=4), ALL)
    many = find_anomalies(lattice_table(n_dopant=100, n_adatom=0, rng=4), ALL)
    assert 9 <= few.sum() <= 13
    assert 95 <= many.sum() <= 106


def test_fixed_contamination_flags_that_share():
    atoms = lattice_table(rng=5)
    for share in (0.01, 0.05, 0.2):
        flags = find_anomalies(atoms, ALL, contamination=share)
        assert flags.sum() == round(share * len(atoms))
        assert flags.attrs["contamination"] == share


def test_scores_are_positive_exactly_for_anomalies_and_add_anomalies_adds_both():
    atoms = lattice_table(rng=6)
    score = anomaly_scores(atoms, ALL, method="lof")
    flags = find_anomalies(atoms, ALL, method="lof")
    assert score.name == "anomaly_score" and score.dtype == np.float64
    assert flags.name == "anomaly" and flags.dtype == bool
    pd.testing.assert_series_equal(score > 0, flags, check_names=False)
    out = add_anomalies(atoms, ALL, method="lof")
    assert out["anomaly"].equals(flags.rename("anomaly"))
    np.testing.assert_allclose(out["anomaly_score"], score)
    assert out.attrs["anomalies"]["method"] == "lof"
    assert out.attrs["anomalies"]["params"]["n_neighbors"] == 77  # len / 20
    assert "anomaly" not in atoms  # the input is not changed
    # the most anomalous atoms are the defects
    top = atoms.species[score.nlargest(20).index]
    assert (top != "host").all()


def test_rows_with_missing_descriptors_are_never_anomalies():
    atoms = lattice_table(rng=7)
    dopants = atoms.index[atoms.species == "dopant"]
    atoms.loc[dopants[:5], "intensity"] = np.nan
    atoms.loc[atoms.index[:3], "circularity"] = np.inf
    flags = find_anomalies(atoms, ALL)
    score = anomaly_scores(atoms, ALL)
    assert not flags[dopants[:5]].any()
    assert score[dopants[:5]].isna().all() and score.iloc[:3].isna().all()
    assert flags[dopants[5:]].all()  # the others still are


def test_edge_atoms_are_left_out_of_the_fit_and_never_flagged():
    atoms = lattice_table(rng=8)
    rng = np.random.default_rng(0)
    cut = make_atoms(
        {
            "x": np.zeros(60),
            "y": np.arange(60.0),
            "area": rng.uniform(3, 10, 60),  # half blobs: small and far from round
            "circularity": rng.uniform(0.4, 0.7, 60),
            "intensity": rng.uniform(300, 600, 60),
            "edge": np.ones(60, bool),
        },
        start_id=10_000,
    )
    both = pd.concat([atoms, cut])
    flags = find_anomalies(both, ALL)
    assert not flags[cut.index].any()
    assert flags[atoms.index].equals(find_anomalies(atoms, ALL))
    # without the exclusion, the cut blobs are scored and do get flagged
    assert find_anomalies(both, ALL, exclude_edge=False, contamination=0.06)[cut.index].all()


def test_results_follow_the_atom_ids_not_the_row_order():
    atoms = lattice_table(rng=9)
    flags = find_anomalies(atoms, ALL)
    shuffled = atoms.sample(frac=1.0, random_state=1)
    again = find_anomalies(shuffled, ALL)
    assert again.index.equals(shuffled.index)
    assert again.reindex(atoms.index).equals(flags)


def test_isolation_forest_is_reproducible_with_rng():
    atoms = lattice_table(rng=10)
    a = anomaly_scores(atoms, ALL, method="iforest", rng=3)
    b = anomaly_scores(atoms, ALL, method="iforest", rng=3)
    pd.testing.assert_series_equal(a, b)


def test_a_large_table_fits_the_svm_on_a_sample_and_still_finds_every_defect(monkeypatch):
    """Over SVM_FIT_MOST atoms the one-class SVM is fitted on a seeded sample and scores
    all: the same flags as the fit on every atom, and the same on every call."""
    from atomstat import outliers

    atoms = lattice_table(n_host=6000, n_dopant=120, n_adatom=60, rng=11)
    sampled = find_anomalies(atoms, ALL, method="ocsvm")
    assert len(atoms) > outliers.SVM_FIT_MOST
    recall, precision = recall_precision(sampled, atoms)
    assert recall >= 0.95 and precision >= 0.9
    assert find_anomalies(atoms, ALL, method="ocsvm").equals(sampled)  # seeded
    monkeypatch.setattr(outliers, "SVM_FIT_MOST", 10**9)
    whole = find_anomalies(atoms, ALL, method="ocsvm")
    assert (whole != sampled).sum() <= 0.002 * len(atoms)


def test_estimator_parameters_can_be_overridden():
    atoms = lattice_table(rng=11)
    score = anomaly_scores(atoms, ALL, method="ocsvm", nu=0.5, gamma=0.1)
    assert score.attrs["params"] == {"nu": 0.5, "gamma": 0.1}


def test_empty_and_tiny_tables():
    empty = make_atoms({}).assign(area=[], circularity=[])
    flags = find_anomalies(empty)
    assert len(flags) == 0 and flags.dtype == bool
    tiny = make_atoms(
        {"x": [0.0, 1.0], "y": [0.0, 0.0], "area": [1.0, 50.0], "circularity": [0.9, 0.9]}
    )
    assert not find_anomalies(tiny).any()


def test_public_names():
    assert atomstat.find_anomalies is find_anomalies
    assert atomstat.cluster is cluster


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "svm"}, "method"),
        ({"columns": ("area", "volume")}, "volume"),
        ({"columns": "area"}, "columns"),
        ({"columns": ("species",)}, "numeric"),
        ({"contamination": 0.7}, "contamination"),
        ({"contamination": "lots"}, "contamination"),
        ({"fence": -1.0}, "fence"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    atoms = lattice_table(n_host=100, rng=12)
    with pytest.raises(ValueError, match=message):
        find_anomalies(atoms, **kwargs)


def test_not_a_table_is_a_type_error():
    with pytest.raises(TypeError, match="DataFrame"):
        find_anomalies(np.zeros((10, 2)))


# ------------------------------------------------------------------------------ clusters


def purity(labels, species):
    table = pd.crosstab(labels, species)
    return table.max(axis=1).sum() / table.to_numpy().sum()


@pytest.mark.parametrize("method", ["gmm", "kmeans"])
def test_two_clusters_separate_dopants_from_adatoms(method):
    atoms = lattice_table(rng=13)
    anomalies = atoms[atoms.species != "host"]
    labels = cluster(anomalies, ("intensity", "nn_distance"), method=method, rng=0)
    assert labels.name == "cluster" and labels.dtype == np.int64
    assert labels.index.equals(anomalies.index)
    assert purity(labels, anomalies.species) == 1.0
    # numbered by size: the 30 dopants are cluster 0, the 15 adatoms cluster 1
    assert (labels[anomalies.species == "dopant"] == 0).all()


def test_gmm_chooses_the_number_of_clusters_by_bic():
    atoms = lattice_table(rng=14)
    labels = cluster(atoms, ("intensity", "nn_distance"), n_clusters="auto", rng=0)
    assert labels.nunique() == 3
    assert purity(labels, atoms.species) == 1.0
    hosts = lattice_table(n_dopant=0, n_adatom=0, rng=15)
    assert cluster(hosts, ("area", "intensity"), n_clusters="auto", rng=0).nunique() == 1


def test_kmeans_auto_chooses_three_by_silhouette():
    rng = np.random.default_rng(16)
    centres = np.repeat([[0.0, 0.0], [10.0, 0.0], [5.0, 9.0]], 100, axis=0)
    xy = centres + rng.normal(0, 1, centres.shape)
    atoms = make_atoms({"x": xy[:, 0], "y": xy[:, 1]})
    labels = cluster(atoms, ("x", "y"), method="kmeans", n_clusters="auto", rng=0)
    assert labels.nunique() == 3
    truth = pd.Series(np.repeat([0, 1, 2], 100), index=atoms.index)
    assert purity(labels, truth) == 1.0


def test_dbscan_finds_groups_and_leaves_noise_out():
    atoms = lattice_table(n_adatom=0, rng=17)
    lone = make_atoms(
        {"x": [1.0], "y": [1.0], "intensity": [5000.0], "nn_distance": [30.0]}, start_id=99_999
    )
    both = pd.concat([atoms, lone])
    labels = cluster(both, ("intensity", "nn_distance"), method="dbscan", eps=1.0)
    assert labels[99_999] == -1
    assert purity(labels[atoms.index], atoms.species) == 1.0
    assert set(labels[atoms.index]) == {0, 1}


def test_missing_and_edge_rows_get_no_cluster():
    atoms = lattice_table(n_host=200, rng=18)
    atoms.loc[atoms.index[0], "intensity"] = np.nan
    atoms.loc[atoms.index[1], "edge"] = True
    labels = cluster(atoms, ("intensity", "nn_distance"), rng=0)
    assert labels.iloc[0] == -1 and labels.iloc[1] == -1
    assert (labels.iloc[2:] >= 0).all()
    assert cluster(atoms, ("intensity", "nn_distance"), exclude_edge=False).iloc[1] >= 0


def test_cluster_of_an_empty_table():
    empty = make_atoms({}).assign(intensity=[])
    labels = cluster(empty, ["intensity"])
    assert len(labels) == 0 and labels.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "spectral"}, ValueError, "method"),
        ({"n_clusters": 0}, ValueError, "n_clusters"),
        ({"n_clusters": "two"}, ValueError, "n_clusters"),
        ({"n_clusters": True}, ValueError, "n_clusters"),
        ({"n_clusters": 50}, ValueError, "exceeds"),
    ],
)
def test_bad_cluster_arguments(kwargs, error, message):
    atoms = lattice_table(n_host=20, n_dopant=3, n_adatom=2, rng=19)
    with pytest.raises(error, match=message):
        cluster(atoms, ("intensity",), **kwargs)


def test_tiny_groups_are_not_split_by_auto():
    atoms = make_atoms({"x": np.arange(4.0), "y": np.zeros(4), "area": [1.0, 2.0, 30.0, 31.0]})
    assert cluster(atoms.iloc[:1], ["area"], n_clusters="auto").tolist() == [0]
    # four atoms cannot carry two clusters of about five: one cluster
    assert cluster(atoms, ["area"], n_clusters="auto").tolist() == [0, 0, 0, 0]
    assert sorted(cluster(atoms, ["area"], n_clusters=2, rng=0).tolist()) == [0, 0, 1, 1]


def test_default_columns_skip_an_intensity_that_was_never_measured():
    """locate() without the raw image leaves intensity NaN: the shape outlier is still found."""
    from atomstat.table import make_atoms

    area = np.r_[np.linspace(19, 21, 200), 6.0]
    atoms = make_atoms({"x": np.arange(201.0), "y": np.zeros(201), "area": area,
                        "circularity": np.full(201, 0.95)})  # fmt: skip
    assert atoms["intensity"].isna().all()
    flags = find_anomalies(atoms, rng=0)
    assert flags.iloc[-1] and int(flags.sum()) == 1


# ----------------------------------------------------------------------------- sublattices


def two_sublattices(rng=0):
    """Bright A and faint B sites in equal numbers (DyScO3-like), with 8 light dopants on B."""
    rng = np.random.default_rng(rng)
    n = 800
    site = np.r_[np.zeros(n, int), np.ones(n, int)]
    level = np.where(site == 0, 1000.0, 300.0) * rng.normal(1, 0.04, 2 * n)
    level[n : n + 8] *= 0.45
    species = np.where(np.arange(2 * n) < n, "host", "host2").astype(object)
    species[n : n + 8] = "dopant"
    area = np.where(site == 0, 20.0, 12.0) + rng.normal(0, 0.6, 2 * n)
    xy = rng.uniform(0, 500, (2 * n, 2))
    return make_atoms(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "intensity": level,
            "area": area,
            "sublattice": site,
            "species": species,
        }
    )


def test_each_atom_is_compared_with_its_own_sublattice():
    atoms = two_sublattices()
    pooled = find_anomalies(atoms, by=None)
    grouped = find_anomalies(atoms)  # by="auto" finds the sublattice column
    assert grouped.attrs["by"] == "sublattice"
    assert grouped.sum() == 8 and (atoms.species[grouped] == "dopant").all()
    # pooled, the B-site dopants hide in the spread of the two sublattices
    assert pooled[atoms.species == "dopant"].sum() == 0


def test_off_site_atoms_are_scaled_on_all_atoms():
    atoms = two_sublattices(rng=1)
    atoms.loc[atoms.index[:20], "sublattice"] = -1  # 20 A-site atoms on no site
    flags = find_anomalies(atoms, ["intensity"], by="sublattice")
    assert not flags.iloc[:20].any()


def test_zscore_flags_exactly_the_atoms_beyond_the_fence():
    atoms = lattice_table(rng=9)
    score = anomaly_scores(atoms, ["intensity"], method="zscore", fence=4.0, by=None)
    z = (atoms.intensity - atoms.intensity.median()) / atoms.intensity.quantile(
        [0.25, 0.75]
    ).diff().iloc[-1]
    np.testing.assert_allclose(score + 1, np.abs(z) / 4.0)
    per_column = find_anomalies(atoms, ["intensity", "area"], fence={"area": 1e6}, by=None)
    assert per_column.attrs["fence"] == {"intensity": 4.5, "area": 1e6}
    assert per_column.sum() == (np.abs(z) > 4.5).sum()


def test_bad_grouping_and_fences_are_named():
    atoms = lattice_table(rng=10)
    with pytest.raises(ValueError, match="by must be"):
        find_anomalies(atoms, by="nope")
    with pytest.raises(ValueError, match="fence\\['area'\\]"):
        find_anomalies(atoms, fence={"area": -1})
