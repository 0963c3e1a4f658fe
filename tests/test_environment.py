"""The course environment: constraints.txt pins everything, environment.yml agrees with it."""
import re
import tomllib

import yaml

from conftest import REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[_norm(name)] = version
    return pins


def _pyproject_requirements() -> list[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"])
    return [_norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in reqs]


def test_key_pins_from_the_design():
    pins = _constraints()
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1.")
    major, minor, patch = (int(p) for p in pins["nbgrader"].split(".")[:3])
    assert (major, minor, patch) >= (0, 9, 6), "nbgrader >= 0.9.6 has the path-traversal fix"


def test_every_requirement_is_pinned():
    pins = _constraints()
    missing = [r for r in _pyproject_requirements() if r not in pins]
    assert not missing, f"pyproject.toml requirements without a pin in constraints.txt: {missing}"


def test_environment_yml_agrees_with_constraints():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pins = _constraints()
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {}
    for item in pip_section:
        if item.startswith("-e"):
            continue
        name, sep, version = item.partition("==")
        assert sep, f"environment.yml: {item!r} is not an exact pin"
        listed[_norm(name.split("[")[0])] = version
    mismatched = {n: (v, pins.get(n)) for n, v in listed.items() if pins.get(n) != v}
    assert not mismatched, f"environment.yml vs constraints.txt (env, constraints): {mismatched}"
    missing = [r for r in _pyproject_requirements() if r not in listed]
    assert not missing, f"environment.yml lacks {missing}"
