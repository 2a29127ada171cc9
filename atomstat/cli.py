"""Command-line interface: ``atomstat analyze``, ``train``, ``track``, ``watch``, ``dashboard``.

Each subcommand parses its arguments and calls the library; no analysis
logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from . import serve

__all__ = ["main"]

log = logging.getLogger("atomstat")


def _train(args) -> int:
    from .fcn.train import TrainConfig, train

    try:
        config = TrainConfig(
            width=args.width,
            steps=args.steps,
            batch_size=args.batch_size,
            patch=args.patch,
            learning_rate=args.learning_rate,
            seed=args.seed,
            batchnorm=not args.no_batchnorm,
            init=args.init,
            dose=tuple(args.dose),
            upsampled=args.upsampled,
            stm_fraction=args.stm_fraction,
            stm_spacing=tuple(args.stm_spacing),
            real=args.real,
            command="atomstat " + shlex.join(sys.argv[1:]),
        )
    except ValueError as exc:  # the field names are the options without "--"
        log.error("cannot train: %s", exc)
        return 1
    try:
        train(config, args.out)
    except (ValueError, OSError) as exc:  # e.g. an --init checkpoint of another architecture
        log.error("training %s failed: %s", args.out, exc)
        return 1
    return 0


def _resolution(text):
    """``--resolution``: auto, full or a whole number of pixels per block side."""
    import argparse

    value = int(text) if text.strip().isdigit() else text.strip()
    try:
        from .fcn.predict import check_resolution

        return check_resolution(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_folder(path, name="--out"):
    """Make the output folder ``path`` (the option ``name``); None, with one line logged,
    when it cannot be made, e.g. because a file has that name."""
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        log.error("%s %s is a file, not a folder", name, path)
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("%s %s: cannot make the folder: %s", name, path, exc)
        return None
    return path


def _analyze(args) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from .errors import AtomstatError
    from .export import write_csv
    from .io import load
    from .pipeline import analyze
    from .plot import save_overlay

    if args.scheduler or args.workers or args.dataset:
        if args.sigma is not None:
            log.error("--sigma cannot be given with --scheduler, --workers or --dataset yet")
            return 1
        return _analyze_dataset(args)
    out = output_folder(args.out)
    if out is None:
        return 1
    failed = []
    for name in tqdm(args.files, desc="files", unit="file", disable=len(args.files) < 2):
        try:
            signal = load(name, channel=args.channel, direction=args.direction)
            atoms = analyze(
                signal,
                threshold=args.threshold,
                model=args.model,
                preprocess=args.preprocess,
                split={"auto": None, "on": True, "off": False}[args.split],
                sigma=args.sigma,
                resolution=args.resolution,
            )
        except (AtomstatError, ValueError, OSError, MemoryError) as exc:
            log.error("skipped %s: %s", name, exc)
            failed.append(name)
            continue
        stem = Path(name).stem
        image = signal.data if signal.data.ndim == 2 else signal.data[0]
        if args.anomalies:
            try:
                atoms = _write_anomalies(out, stem, image, atoms, args, source=name)
            except ValueError as exc:  # e.g. a descriptor column that does not exist
                log.error("no anomalies for %s: %s", name, exc)
                failed.append(name)
        if args.defects:
            _write_defects(out / f"{stem}_defects.csv", signal, atoms, name)
        write_csv(atoms, out / f"{stem}_atoms.csv")
        first = atoms[atoms["frame"] == 0]
        save_overlay(
            out / f"{stem}_overlay.png",
            image,
            first,
            title=f"{Path(name).name}: {len(first)} atoms",
        )
        log.info("%s: %d atoms -> %s", name, len(atoms), out)
    if failed:
        log.error("%d of %d files failed: %s", len(failed), len(args.files), ", ".join(failed))
    return 1 if failed else 0


def _settings(args):
    """The analysis settings of ``analyze`` and ``watch`` (for the dataset and the cluster)."""
    from .distributed import Settings

    return Settings(
        threshold=args.threshold,
        model=args.model,
        preprocess=args.preprocess,
        split={"auto": None, "on": True, "off": False}[args.split],
        resolution=getattr(args, "resolution", "auto"),
        anomalies=args.anomalies,
        channel=getattr(args, "channel", None),
        direction=getattr(args, "direction", None),
    )


def _analyze_dataset(args) -> int:
    """``analyze --scheduler/--workers/--dataset``: the files into the Parquet dataset at --out,
    on a Dask cluster or in this process."""
    from .batch import analyze_files
    from .distributed import close, connect

    out = output_folder(args.out)
    if out is None:
        return 1
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        client = connect(args.scheduler, args.workers)
    except (OSError, TimeoutError, ValueError) as exc:
        log.error("cannot reach the Dask scheduler %s: %s", args.scheduler, exc)
        return 1
    if client is not None:
        log.info("Dask dashboard: %s", client.dashboard_link)
    try:
        report = analyze_files(
            args.files, out, client=client, material=args.material, settings=_settings(args),
            progress=True,
        )  # fmt: skip
    finally:
        if client is not None:
            close(client)
    (log.error if report.failed else log.info)("%s", report.summary())
    return 1 if report.failed else 0


def _watch(args) -> int:
    from .watch import Watcher

    out = output_folder(args.out)
    if out is None:
        return 1
    try:
        watcher = Watcher(
            args.folder, out, settings=_settings(args), material=args.material,
            settle=args.settle, polling=args.polling,
        )  # fmt: skip
    except (NotADirectoryError, TypeError, ValueError) as exc:
        log.error("cannot watch: %s", exc)
        return 1
    log.info(
        "watching %s -> %s (Ctrl-C stops; a restart goes on where it stopped)", args.folder, out
    )
    try:
        written = watcher.run(once=args.once)
    except KeyboardInterrupt:
        written = watcher.written
    log.info("%d frame(s) written to %s", written, out)
    return 0


def _write_defects(path, signal, atoms, name):
    """find_defects on the atoms and the data, written as CSV (a failure is logged)."""
    from .defects import find_defects

    try:
        defects = find_defects(atoms, signal)
    except ValueError as exc:
        log.error("no defects for %s: %s", name, exc)
        return
    defects.to_csv(path)
    log.info("%s: %d defects %s", name, len(defects), defects["kind"].value_counts().to_dict())


def _write_anomalies(out, stem, image, atoms, args, *, source):
    """Flag anomalies, label them, write the annotated figure and the session; return the
    labelled table."""
    from .export import write_figure
    from .labels import LabelSet
    from .outliers import add_anomalies
    from .session import save_session

    columns = tuple(args.anomaly_columns.split(",")) if args.anomaly_columns else None
    atoms = add_anomalies(atoms, columns, method=args.anomalies)
    columns = tuple(atoms.attrs["anomalies"]["columns"])  # the defaults, when none were given
    labels = LabelSet({"anomaly": "#d55e00"})
    labels.set_auto(atoms["anomaly"], name="anomaly")
    atoms = labels.apply(atoms)
    first = atoms[atoms["frame"] == 0]
    write_figure(
        out / f"{stem}_annotated.png",
        image,
        first,
        labels,
        unlabelled="lattice",
        scatter=columns[:2] if len(columns) > 1 else None,
    )
    params = {"anomalies": args.anomalies, "threshold": args.threshold}
    save_session(out / f"{stem}_session.json", atoms, labels, params=params, source=source)
    log.info(
        "%s: %d anomalies (%s on %s)",
        stem,
        int(atoms["anomaly"].sum()),
        args.anomalies,
        ", ".join(columns),
    )
    return atoms


def _evaluate(args) -> int:
    from pathlib import Path

    from .fcn.card import evaluate, write_card
    from .fcn.predict import load_model

    out = Path(args.model).with_suffix("")
    model, record = out.with_suffix(".keras"), out.with_suffix(".train.json")
    # Check all that write_card needs before the long evaluation, not after it.
    if not model.is_file():
        log.error("cannot evaluate: model file %s does not exist", model)
        return 1
    if not record.is_file():
        log.error(
            "cannot evaluate %s: its training record %s does not exist (the card is written "
            "from it; evaluate the models written by atomstat train)",
            model,
            record,
        )
        return 1
    try:
        load_model(str(model))
        heldout = evaluate(str(model), n_images=args.images, progress=True)
        card = write_card(out, heldout, evaluate_command="atomstat " + shlex.join(sys.argv[1:]))
    except (ValueError, OSError) as exc:
        log.error("cannot evaluate %s: %s", model, exc)
        return 1
    log.info("held-out F1 %.4f, RMSE %.3f px; card: %s", heldout["f1"], heldout["rmse_px"], card)
    return 0


def _track(args) -> int:
    from pathlib import Path

    import numpy as np

    from .errors import AtomstatError
    from .export import write_csv
    from .io import load
    from .track import get_drift, track

    out = output_folder(args.out)
    if out is None:
        return 1
    stem = Path(args.movie).stem
    try:
        signal = load(args.movie, lazy=True)  # frames are read chunk by chunk
        if args.dumbbells:
            from .dumbbell_finder import find_dumbbells

            table = find_dumbbells(
                signal,
                method=args.method,
                model=args.model,
                threshold=args.threshold,
                reference=args.reference,
                progress=True,
            )
        else:
            from .pipeline import analyze

            table = analyze(
                signal, threshold=args.threshold or 0.5, model=args.model, progress=True
            )
        tracks = track(table, images=signal, search_range=args.search_range, memory=args.memory)
    except (AtomstatError, ValueError, OSError) as exc:
        log.error("cannot track %s: %s", args.movie, exc)
        return 1
    unknown = sorted(set(args.particles or ()) - set(tracks["particle"])) if args.dumbbells else []
    if unknown:
        log.error(
            "--particles: no track %s in %s; its tracks are numbered 0 to %d",
            ", ".join(map(str, unknown)),
            args.movie,
            tracks["particle"].max() if len(tracks) else -1,
        )
        return 1
    write_csv(tracks, out / f"{stem}_tracks.csv")
    write_csv(get_drift(tracks), out / f"{stem}_drift.csv")
    first = signal.data[0] if signal.data.ndim == 3 else signal.data
    _track_figures(out, stem, np.asarray(first), tracks, args)
    log.info(
        "%s: %d %s in %d tracks -> %s",
        stem,
        len(tracks),
        "dumbbells" if args.dumbbells else "atoms",
        tracks["particle"].nunique(),
        out,
    )
    return 0


def _track_figures(out, stem, image, tracks, args):
    """The first frame with its tracks numbered and, for dumbbells, the angle plots."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plot import plot_angle_distribution, plot_angle_series, plot_dumbbells, save_overlay

    first = tracks[tracks["frame"] == tracks["frame"].min()]
    if not args.dumbbells:
        save_overlay(out / f"{stem}_overlay.png", image, first, title=f"{stem}: frame 0")
        return
    sizes = tracks.groupby("particle").size().sort_values(ascending=False, kind="stable")
    chosen = args.particles or list(first["particle"][first["particle"].isin(sizes.index[:6])])
    fig, ax = plt.subplots(figsize=(7, 7 * image.shape[0] / image.shape[1]))
    plot_dumbbells(image, first, ax=ax, highlight=chosen)
    fig.savefig(out / f"{stem}_overlay.png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    plot_angle_distribution(tracks, ax=ax1)
    plot_angle_series(tracks, chosen or None, ax=ax2)
    fig.tight_layout()
    fig.savefig(out / f"{stem}_angles.png", dpi=150)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atomstat", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="find the atoms in image files")
    a.add_argument("files", nargs="+", metavar="FILE", help="microscope image(s) or stack(s)")
    a.add_argument("--out", required=True, help="folder for <name>_atoms.csv and _overlay.png")
    a.add_argument(
        "--threshold",
        type=_probability,
        default=0.5,
        help="probability level of the blob contours (default 0.5)",
    )
    a.add_argument(
        "--model",
        default=None,
        help="a shipped model (universal, stm) or a .keras file; default: stm for Nanonis/WSxM "
        "files, else universal",
    )
    a.add_argument(
        "--preprocess",
        choices=("none", "stm", "plane", "invert"),
        default=None,
        help="clean each image first: stm = plane background, line levelling, scar repair; "
        "plane = the background only; invert = dark atoms made bright (ABF); none = as "
        "recorded, with no check (default: as recorded, inverted when it finds far more atoms "
        "so, with a warning)",
    )
    a.add_argument(
        "--split",
        choices=("auto", "on", "off"),
        default="auto",
        help="split blobs that hold several atoms; auto = on for STM files and the stm model "
        "(default: auto)",
    )
    a.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="the atom width in px (Gaussian sigma of a column); default: estimated from the "
        "image, with a warning when the estimate is doubtful",
    )
    a.add_argument(
        "--resolution",
        type=_resolution,
        default="auto",
        help="auto: run the network on 2x2 (or larger) block means where the atoms are at "
        "least 1.95 px wide (about 4x fewer pixels; its map brought back by a guided filter), "
        "after checking on a 256 px crop that the blocks find the columns that every pixel "
        "finds, else on every pixel; full: on every pixel; a number: pixels per block side "
        "(default: auto)",
    )
    a.add_argument(
        "--channel",
        default=None,
        help="the channel to analyse in multi-channel files, e.g. Z or Current for .sxm files "
        "(default: the topography)",
    )
    a.add_argument(
        "--direction",
        choices=("forward", "backward"),
        default=None,
        help="scan direction in STM files (default: forward)",
    )
    a.add_argument(
        "--anomalies",
        choices=("zscore", "ocsvm", "iforest", "lof"),
        default=None,
        help="also flag anomalous atoms with this method and write <name>_annotated.png "
        "and <name>_session.json; the table gets anomaly, anomaly_score and label columns",
    )
    a.add_argument(
        "--anomaly-columns",
        default=None,
        metavar="COLS",
        help="comma-separated descriptors for --anomalies (default: intensity,area)",
    )
    a.add_argument(
        "--defects",
        action="store_true",
        help="also write <name>_defects.csv: vacancies, adatoms and anomalous atoms, or the "
        "bright and dark features of STM and unresolved images (atomstat.find_defects)",
    )
    cluster = a.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on this Dask cluster (tcp://host:8786 or a scheduler .json file) and write "
        "the Parquet dataset to --out",
    )
    cluster.add_argument(
        "--workers",
        type=int_range(1),
        default=None,
        metavar="N",
        help="start a local Dask cluster of N worker processes and write the Parquet dataset",
    )
    a.add_argument(
        "--dataset",
        action="store_true",
        help="write the Parquet dataset to --out in this process (implied by --scheduler and "
        "--workers); a re-run skips what is written",
    )
    a.add_argument("--material", default=None, help="material tag for the library, e.g. graphene")
    a.set_defaults(func=_analyze)

    t = sub.add_parser("train", help="train the FCN on simulated images")
    t.add_argument("--out", required=True, help="output path without suffix, e.g. models/universal")
    t.add_argument("--steps", type=int_range(1), default=6000)
    t.add_argument("--batch-size", type=int_range(1), default=16)
    t.add_argument(
        "--patch", type=int, default=128, help="training image side (px; a multiple of 4, >= 32)"
    )
    t.add_argument("--width", type=int_range(1), default=20, help="kernels in the first block")
    t.add_argument("--learning-rate", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--dose",
        type=float,
        nargs=2,
        default=(8.0, 400.0),
        metavar=("LOW", "HIGH"),
        help="range of simulated STEM doses, counts at a host column (default 8 400)",
    )
    t.add_argument(
        "--upsampled",
        type=float,
        default=0.0,
        help="fraction of scenes with small atoms, upsampled as segment() does (default 0)",
    )
    t.add_argument(
        "--stm-fraction",
        type=float,
        default=0.25,
        help="fraction of STM-like scenes (default 0.25; near 1 for an STM model)",
    )
    t.add_argument(
        "--stm-spacing",
        type=float,
        nargs=2,
        default=(3.3, 5.9),
        metavar=("LOW", "HIGH"),
        help="range of STM lattice spacings in atom widths (default 3.3 5.9)",
    )
    t.add_argument(
        "--real",
        type=float,
        default=0.0,
        help="fraction of scenes made to look like real frames: contamination, clusters, "
        "probe tails, line noise, JPEG, scale bars, weak sublattices, low-dose graphene "
        "(default 0)",
    )
    t.add_argument(
        "--init",
        default=None,
        help="start from the weights of a training checkpoint (.ckpt.keras) or, with "
        "--no-batchnorm, of a shipped model (.keras)",
    )
    t.add_argument(
        "--no-batchnorm",
        action="store_true",
        help="train the plain paper network (slower to converge)",
    )
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score a trained model on held-out scenes, write its card")
    e.add_argument("model", help="the .keras file written by atomstat train")
    e.add_argument("--images", type=int_range(1), default=120, help="held-out scenes (default 120)")
    e.set_defaults(func=_evaluate)

    _track_parser(sub)
    _watch_parser(sub)
    serve.add_parser(sub)
    return p


def _track_parser(sub) -> None:
    k = sub.add_parser("track", help="follow atoms or dumbbells through a movie")
    k.add_argument("movie", help="an image stack (T, H, W) in any format atomstat.load reads")
    k.add_argument("--out", required=True, help="folder for <name>_tracks.csv, _drift.csv, figures")
    k.add_argument(
        "--dumbbells", action="store_true", help="pair the columns into dumbbells and track those"
    )
    k.add_argument(
        "--method",
        choices=("columns", "blob"),
        default="columns",
        help="dumbbell angles from the two columns (default) or from the merged blob's ellipse",
    )
    k.add_argument(
        "--threshold",
        type=_probability,
        default=None,
        help="contour level (default 0.5; 0.2 on the smoothed map for --method blob)",
    )
    k.add_argument("--model", default=None, help="a .keras file (default: the shipped model)")
    k.add_argument(
        "--reference",
        type=_reference,
        default=None,
        metavar="ANGLE|X0,Y0,X1,Y1",
        help="measure angles from this direction: degrees, or two points on the image",
    )
    k.add_argument(
        "--search-range", type=float, default=None, help="px per frame after drift correction"
    )
    k.add_argument("--memory", type=int, default=2, help="frames a feature may be missed")
    k.add_argument(
        "--particles",
        type=_ids,
        default=None,
        metavar="IDS",
        help="comma-separated tracks for the angle plot (default: 6 of the longest)",
    )
    k.set_defaults(func=_track)


def _watch_parser(sub) -> None:
    w = sub.add_parser("watch", help="analyse the files a microscope writes into a folder, live")
    w.add_argument("folder", metavar="DIR", help="the folder to follow")
    w.add_argument("--out", required=True, help="folder of the Parquet dataset (the results)")
    w.add_argument("--material", default=None, help="material tag for the library")
    w.add_argument("--threshold", type=_probability, default=0.5, help="contour level (0.5)")
    w.add_argument("--model", default=None, help="a shipped model or a .keras file")
    w.add_argument("--preprocess", choices=("stm", "plane", "invert"), default=None)
    w.add_argument("--split", choices=("auto", "on", "off"), default="auto")
    w.add_argument(
        "--anomalies",
        choices=("ocsvm", "iforest", "lof"),
        default="ocsvm",
        help="anomaly flags, fitted frame by frame (default: ocsvm)",
    )
    w.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds a file's size must stay unchanged to be complete (not for .npy; 1.0)",
    )
    w.add_argument(
        "--polling", action="store_true", help="poll the folder (network shares) instead of events"
    )
    w.add_argument(
        "--once", action="store_true", help="analyse what is there and stop, instead of following"
    )
    w.set_defaults(func=_watch)


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def int_range(low, high=None):
    """An argparse type: an integer in [low, high] (no upper end when ``high`` is None)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def _ids(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None


def _reference(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 4 numbers: {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 4:
        return (tuple(values[:2]), tuple(values[2:]))
    raise argparse.ArgumentTypeError(f"give an angle or x0,y0,x1,y1, got {text!r}")


def main(argv=None) -> int:
    """Entry point of the ``atomstat`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
