"""colcon build of the vla_stack ament_python package; the pip path installs the repo root instead."""

from setuptools import find_packages, setup

PACKAGE = "vla_stack"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="vla-stack maintainers",
    maintainer_email="maintainers@vla-stack.example.com",
    description="The vla-stack command line over bring-up, data, evaluation and training.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vla-stack = vla_stack.cli:main",
        ],
    },
)
