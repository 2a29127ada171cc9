"""pyproject.toml, environment.yml and requirements.lock describe the same dependencies.

pyproject.toml is the source of truth. environment.yml must list every runtime
and test dependency (conda-forge names, or in its ``pip:`` section with the same
markers) with bounds at least as strict, and nothing else. requirements.lock
must pin every direct dependency, extras included, to a version that satisfies
pyproject.toml.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

#: conda-forge name -> PyPI name, where they differ (documented in environment.yml).
CONDA_TO_PYPI = {"hyperspy-base": "hyperspy", "matplotlib-base": "matplotlib"}
#: Conda packages that are tooling, not dependencies of atomstat.
CONDA_TOOLING = {"python", "pip"}
#: Extras that environment.yml must carry (bench is for the benchmark run only).
ENVIRONMENT_EXTRAS = ("test",)
#: The platform requirements.lock was compiled for (see its header and `make lock`).
LOCK_PLATFORM = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
    "os_name": "posix",
}

Key = tuple[str, str]  # (canonical name, marker text)


def load_pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def project_requirements(pyproject: dict, extras=ENVIRONMENT_EXTRAS) -> list[Requirement]:
    """Return the runtime requirements plus those of ``extras``."""
    project = pyproject["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def _parse(spec: str, where: str) -> Requirement:
    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        raise ValueError(f"{where}: {spec!r} is not `name>=version` style ({exc})") from exc


def environment_requirements(environment: dict) -> tuple[list[Requirement], list[str]]:
    """Return (requirements, pip options such as ``-e .``) listed in environment.yml."""
    requirements, options = [], []
    for item in environment["dependencies"]:
        if isinstance(item, dict):
            for line in item["pip"]:
                if line.startswith("-"):
                    options.append(line)
                else:
                    requirements.append(_parse(line, "environment.yml pip section"))
            continue
        name = re.split(r"[\s<>=!~]", item, maxsplit=1)[0]
        if name in CONDA_TOOLING:
            continue
        requirement = _parse(item, "environment.yml")
        requirement.name = CONDA_TO_PYPI.get(requirement.name, requirement.name)
        requirements.append(requirement)
    return requirements, options


def _key(requirement: Requirement) -> Key:
    marker = str(requirement.marker) if requirement.marker else ""
    return canonicalize_name(requirement.name), marker


def _bound(specifier: SpecifierSet, operators: set[str], pick) -> Version | None:
    versions = [Version(s.version) for s in specifier if s.operator in operators]
    return pick(versions) if versions else None


def lower_bound(specifier: SpecifierSet) -> Version | None:
    return _bound(specifier, {">=", ">", "==", "~=", "==="}, max)


def upper_bound(specifier: SpecifierSet) -> Version | None:
    return _bound(specifier, {"<", "<=", "=="}, min)


def _bound_problems(name: str, wanted: SpecifierSet, listed: SpecifierSet) -> list[str]:
    problems = []
    low, listed_low = lower_bound(wanted), lower_bound(listed)
    if low is not None and (listed_low is None or listed_low < low):
        problems.append(
            f"{name}: environment.yml allows {listed or 'any'}, pyproject needs {wanted}"
        )
    high, listed_high = upper_bound(wanted), upper_bound(listed)
    if high is not None and (listed_high is None or listed_high > high):
        problems.append(f"{name}: environment.yml lacks the upper bound of {wanted}")
    return problems


def compare(wanted: list[Requirement], listed: list[Requirement]) -> list[str]:
    """Return what differs between pyproject requirements and environment.yml ones."""
    wanted_by_key = {_key(r): r for r in wanted}
    listed_by_key = {_key(r): r for r in listed}
    problems = []
    for key in wanted_by_key.keys() - listed_by_key.keys():
        problems.append(f"missing from environment.yml: {wanted_by_key[key]}")
    for key in listed_by_key.keys() - wanted_by_key.keys():
        problems.append(f"not a dependency in pyproject.toml: {listed_by_key[key]}")
    for key in wanted_by_key.keys() & listed_by_key.keys():
        problems += _bound_problems(
            key[0], wanted_by_key[key].specifier, listed_by_key[key].specifier
        )
    return sorted(problems)


def lock_pins(text: str) -> dict[str, Version]:
    """Return canonical name -> pinned version from a ``uv pip compile`` output."""
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def unpinned(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    """Return the requirements (for the lock's platform) that ``pins`` misses or violates."""
    problems = []
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(LOCK_PLATFORM):
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"not pinned in requirements.lock: {requirement}")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"requirements.lock pins {requirement.name}=={pinned}: {requirement}")
    return problems


# --- the real files ---------------------------------------------------------------------------


def test_environment_yml_matches_pyproject():
    listed, _ = environment_requirements(load_environment())
    assert compare(project_requirements(load_pyproject()), listed) == []


def test_environment_yml_installs_atomstat_on_python_311():
    environment = load_environment()
    _, options = environment_requirements(environment)
    assert environment["name"] == "atomstat"
    assert environment["channels"] == ["conda-forge"]
    assert "-e ." in options
    assert "python=3.11" in environment["dependencies"]
    assert Version("3.11") in SpecifierSet(load_pyproject()["project"]["requires-python"])


def test_lock_pins_every_direct_dependency():
    pyproject = load_pyproject()
    extras = tuple(pyproject["project"]["optional-dependencies"])
    requirements = project_requirements(pyproject, extras=extras)
    text = (ROOT / "requirements.lock").read_text()
    assert unpinned(requirements, lock_pins(text)) == []
    header = text.splitlines()[1]
    for extra in extras:
        assert f"--extra {extra}" in header, f"requirements.lock was compiled without {extra}"


# --- the checks can fail ----------------------------------------------------------------------


@pytest.fixture
def files():
    return load_pyproject(), load_environment()


def _problems(pyproject: dict, environment: dict) -> list[str]:
    return compare(project_requirements(pyproject), environment_requirements(environment)[0])


def test_new_pyproject_dependency_missing_from_environment_is_reported(files):
    pyproject, environment = copy.deepcopy(files)
    pyproject["project"]["dependencies"].append("Zarr_Store>=2")
    assert _problems(pyproject, environment) == [
        "missing from environment.yml: Zarr_Store>=2",
    ]


def test_environment_only_package_is_reported(files):
    pyproject, environment = copy.deepcopy(files)
    environment["dependencies"].insert(3, "jupyterlab>=4")
    assert _problems(pyproject, environment) == [
        "not a dependency in pyproject.toml: jupyterlab>=4",
    ]


def test_looser_bounds_and_other_markers_are_reported(files):
    pyproject, environment = copy.deepcopy(files)
    deps = environment["dependencies"]
    deps[deps.index("numpy>=2.0")] = "numpy>=1.26"
    deps[deps.index("bqplot>=0.13,<0.14")] = "bqplot>=0.13"
    pip = next(item for item in deps if isinstance(item, dict))["pip"]
    pip[0] = "tensorflow-cpu>=2.18; platform_system == 'Linux'"
    problems = _problems(pyproject, environment)
    assert "numpy: environment.yml allows >=1.26, pyproject needs >=2.0" in problems
    assert "bqplot: environment.yml lacks the upper bound of <0.14,>=0.13" in problems
    assert any(p.startswith("missing from environment.yml: tensorflow-cpu") for p in problems)
    assert len(problems) == 4


def test_names_are_normalised(files):
    pyproject, environment = copy.deepcopy(files)
    deps = environment["dependencies"]
    deps[deps.index("scikit-image>=0.25")] = "Scikit_Image>=0.25"
    assert _problems(pyproject, environment) == []


def test_missing_or_wrong_pin_is_reported():
    pins = lock_pins("numpy==2.3.1\n    # via atomstat\nscipy==1.10.0\n")
    requirements = [Requirement(r) for r in ("numpy>=2.0", "scipy>=1.13", "ruff>=0.8")]
    requirements.append(Requirement("pywin32>=300; platform_system == 'Windows'"))
    assert unpinned(requirements, pins) == [
        "requirements.lock pins scipy==1.10.0: scipy>=1.13",
        "not pinned in requirements.lock: ruff>=0.8",
    ]
