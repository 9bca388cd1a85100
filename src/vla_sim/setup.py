"""colcon build of the vla_sim ament_python package; the pip path installs the repo root instead."""

from setuptools import find_packages, setup

PACKAGE = "vla_sim"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # The MJCF models are read next to the module (importlib.resources), so they ship as package data.
    package_data={PACKAGE: ["models/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    # mujoco is a pip dependency (no rosdep key): pip install mujoco
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="vla-stack maintainers",
    maintainer_email="maintainers@vla-stack.example.com",
    description="MuJoCo simulation of the WidowX 250 6DOF with cameras, publishing sim time.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = vla_sim.sim_node:main",
        ],
    },
)
