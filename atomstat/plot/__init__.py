"""Figures. The only subpackage that draws.

Functions take ``ax=None`` and return the axes; they never show or print.
"""

from .atoms import plot_atoms, save_overlay, show_image
from .elongation import elongation_vectors, plot_elongation
from .labels import (
    add_scale_bar,
    annotated_figure,
    label_groups,
    nice_length,
    plot_descriptors,
    plot_labels,
)
from .molecules import plot_molecules
from .movies import plot_angle_distribution, plot_angle_series, plot_drift, plot_dumbbells

__all__ = [
    "add_scale_bar",
    "annotated_figure",
    "elongation_vectors",
    "label_groups",
    "nice_length",
    "plot_angle_distribution",
    "plot_angle_series",
    "plot_atoms",
    "plot_descriptors",
    "plot_drift",
    "plot_elongation",
    "plot_dumbbells",
    "plot_labels",
    "plot_molecules",
    "save_overlay",
    "show_image",
]
