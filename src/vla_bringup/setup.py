"""colcon (ament_python) build of vla_bringup: the launch files, the deployment config and the launcher.

Where launch/ and config/ come from: they live at the repository root (the pip path and
vla_bringup.paths read them there), but colcon builds every package from its own folder and only
installs data files given relative to it. src/vla_bringup/launch and src/vla_bringup/config are
therefore relative symlinks to ../../launch and ../../config. Explicit '../../launch/x' entries were
rejected: colcon --symlink-install mirrors each data file under build/<pkg>/<entry>, so a '..' entry
escapes the build folder and lands wherever the workspace layout puts it. The symlinks keep every
entry inside the package, work with and without --symlink-install, and survive `COPY` in Docker.
"""

import glob
import os

from setuptools import find_packages, setup

PACKAGE = "vla_bringup"
HERE = os.path.dirname(os.path.abspath(__file__))


def _package_files(pattern: str) -> list[str]:
    """Files matching pattern, relative to this folder; an empty match is an error, not a silent no-op."""
    found = sorted(glob.glob(pattern, root_dir=HERE))
    if not found:
        raise FileNotFoundError(
            f"{PACKAGE}: nothing matches '{pattern}' under {HERE}; launch/ and config/ must be symlinks "
            "to the repository's ../../launch and ../../config"
        )
    return found


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _package_files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _package_files("config/*.yaml") + _package_files("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="vla-stack maintainers",
    maintainer_email="maintainers@vla-stack.example.com",
    description="Launch files, deployment configuration, the pip-path launcher and its graph profiles.",
    license="Apache-2.0",
)
