"""envs/ pins the versions we test with; pyproject.toml holds the compatible ranges. They must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    required = project["dependencies"] + extras["slurm"] + extras["timm"]  # the env can submit to SLURM and train timm models
    return {_canonical(Requirement(r).name): Requirement(r) for r in required}


def _env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency.get("pip", []):
                name, _, version = line.partition("==")
                assert version, f"{path.name}: pip entry {line!r} must pin an exact version (name==x.y.z)"
                pins[_canonical(name)] = version
    return pins


def test_every_env_file_parses_and_pins_pyproject_dependencies_within_their_ranges():
    requirements = _pyproject_requirements()
    env_files = sorted((ROOT / "envs").glob("*.yaml"))
    assert env_files, "envs/ holds no environment file"
    for path in env_files:
        pins = _env_pins(path)
        assert set(pins) == set(requirements), f"{path.name} and pyproject.toml list different packages"
        for name, version in pins.items():
            assert requirements[name].specifier.contains(version, prereleases=True), (
                f"{path.name} pins {name}=={version}, outside pyproject.toml's {requirements[name]}"
            )


def test_env_python_matches_requires_python():
    env = yaml.safe_load((ROOT / "envs" / "patchlesion.yaml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains(python.split("=", 1)[1] + ".0")


def test_every_rule_uses_the_pinned_env():
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, flags=re.MULTILINE))
        assert rules == text.count('conda:\n        "../../envs/patchlesion.yaml"'), path.name
