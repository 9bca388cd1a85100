"""Static checks of the ROS 2 packaging: package.xml, setup.py/setup.cfg, launch files and params YAML.

No colcon, `launch` or ROS install is needed, and no node module is imported (they may not import
without rclpy): node modules and launch files are read with `ast`, the graph profiles the launch
files build their nodes from (vla_bringup.profiles, pure) are imported; each setup.py is executed with
`setuptools.setup` replaced by a recorder, so what is checked is what colcon would install.
The checkers return lists of problems; the last tests feed them broken input to show they can fail.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import runpy
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
import setuptools
import yaml

from vla_bringup.profiles import PROFILES, NodeSpec

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LAUNCH_DIR = REPO / "launch"
CONFIG_DIR = REPO / "config"

# The executables each package must install (the interface launch files and users rely on).
EXPECTED_SCRIPTS = {
    "vla_perception": {"perception_node": "vla_perception.perception_node:main"},
    "vla_policy": {"policy_node": "vla_policy.policy_node:main"},
    "vla_actuation": {"actuation_node": "vla_actuation.actuation_node:main"},
    "vla_sim": {"sim_node": "vla_sim.sim_node:main"},
    "vla_bringup": {},
    "vla_common": {},
    "vla_data": {},
    "vla_eval": {},
    "vla_training": {},
    "vla_stack": {"vla-stack": "vla_stack.cli:main"},
}
PACKAGES = sorted(EXPECTED_SCRIPTS)
EXPECTED_LAUNCH_FILES = {"sim.launch.py", "widowx.launch.py", "gazebo.launch.py", "replay.launch.py"}
# Node names the params files may use (plus the '/**' wildcard).
NODE_NAMES = {"sim", "perception", "policy", "actuation"}
# Packages a launch file may look up that are not built from this repository.
EXTERNAL_SHARE_PACKAGES = {"interbotix_xsarm_ros_control", "interbotix_xsarm_sim"}
# The profile each launch file starts (vla_bringup.profiles: one description of the graph).
LAUNCH_PROFILES = {
    "sim.launch.py": "sim",
    "widowx.launch.py": "widowx",
    "gazebo.launch.py": "gazebo",
    "replay.launch.py": "replay",
}
# use_sim_time of each profile's nodes: sim_node is the clock (it steps on wall time and publishes
# /clock), so it keeps wall time; the real arm runs on wall time; the rest on /clock.
USE_SIM_TIME = {
    "sim": {"sim": False, "perception": True, "policy": True, "actuation": True},
    "widowx": {"perception": False, "policy": False, "actuation": False},
    "gazebo": {"perception": True, "policy": True, "actuation": True},
    "replay": {"perception": True, "policy": True, "actuation": True},
}
# The params file every node loads after its own (see vla_bringup.profiles.CONTROL_PARAMS), and the
# parameters only it may define (defined once).
CONTROL_FILE = "control.yaml"
CONTROL_ONLY_KEYS = {"control_hz", "step_dt_s"}
# Imported top-level module -> the package.xml key that must declare it.
ROS_IMPORT_KEYS = {
    "rclpy": "rclpy",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
}
PARAMS_FILE_RE = re.compile(r"^[\w.-]+\.(yaml|yml|xml)$")


# --------------------------------------------------------------------------------------------------
# Readers


@cache
def setup_kwargs(package: str) -> dict:
    """The keyword arguments src/<package>/setup.py passes to setuptools.setup, run from its folder."""
    recorded: dict = {}
    real_setup, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kwargs: recorded.update(kwargs)
    try:
        os.chdir(SRC / package)
        runpy.run_path(str(SRC / package / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    assert recorded, f"src/{package}/setup.py never called setuptools.setup"
    return recorded


def console_scripts(package: str) -> dict[str, str]:
    entries = setup_kwargs(package).get("entry_points", {}).get("console_scripts", [])
    scripts = {}
    for entry in entries:
        name, _, target = entry.partition("=")
        scripts[name.strip()] = target.strip()
    return scripts


def data_files(package: str) -> dict[str, list[str]]:
    return {dest: list(sources) for dest, sources in setup_kwargs(package).get("data_files", [])}


def package_xml(package: str) -> ET.Element:
    return ET.parse(SRC / package / "package.xml").getroot()


def exec_depends(package: str) -> set[str]:
    root = package_xml(package)
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.findall(tag)}


def string_constants(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def constant_str(expr: ast.expr | None) -> str | None:
    return expr.value if isinstance(expr, ast.Constant) and isinstance(expr.value, str) else None


# --------------------------------------------------------------------------------------------------
# Checkers (each returns a list of problems; empty means fine)


def entry_point_problems(
    src_root: Path, package: str, script: str, target: str, packages: list[str]
) -> list[str]:
    """The module of `script = module:function` exists in this package and defines a callable main."""
    module, _, function = target.partition(":")
    parts = module.split(".")
    if module.rpartition(".")[0] not in packages and module not in packages:
        return [f"{package}: console_script '{script}' -> {module}, which is not in setup.py's packages"]
    candidates = [
        src_root / package / Path(*parts).with_suffix(".py"),
        src_root / package / Path(*parts) / "__init__.py",
    ]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        return [f"{package}: console_script '{script}' -> {target}, but {candidates[0]} does not exist"]
    tree = ast.parse(path.read_text(), filename=str(path))
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == function:
            required = len(stmt.args.args) - len(stmt.args.defaults)
            if required > 0:
                return [f"{path}: {function}() needs {required} argument(s); a console script passes none"]
            return []
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == function for t in stmt.targets
        ):
            return []
        if isinstance(stmt, ast.ImportFrom) and any((a.asname or a.name) == function for a in stmt.names):
            return []
    return [f"{path}: console_script '{script}' needs a top-level '{function}', which is not defined"]


def yaml_problems(path: Path) -> list[str]:
    """A ROS 2 params file: a mapping of node names (or '/**') to {'ros__parameters': {...}}."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"{path.name}: not valid YAML: {exc}"]
    if not isinstance(data, dict) or not data:
        return [
            f"{path.name}: top level must be a non-empty mapping of node names, got {type(data).__name__}"
        ]
    problems = []
    for node_name, body in data.items():
        if node_name != "/**" and str(node_name).lstrip("/") not in NODE_NAMES:
            problems.append(
                f"{path.name}: top-level key '{node_name}' is not a node name ({sorted(NODE_NAMES)})"
            )
        if not isinstance(body, dict) or not isinstance(body.get("ros__parameters"), dict):
            problems.append(f"{path.name}: '{node_name}' has no 'ros__parameters' mapping")
    return problems


def yaml_node_keys(path: Path) -> set[str]:
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k).lstrip("/") if k != "/**" else "/**" for k in data}


def node_problems(
    where: str, package: str, executable: str, name: str, params_files: list[str], scripts, config_dir
) -> list[str]:
    """One node a launch file starts: a console script of this repository and existing params files."""
    problems = []
    if package not in scripts:
        problems.append(f"{where}: package '{package}' is not built from this repository")
    elif executable not in scripts[package]:
        problems.append(
            f"{where}: '{executable}' is not a console_script of {package} ({sorted(scripts[package])})"
        )
    for params_file in params_files:
        path = config_dir / params_file
        if not path.is_file():
            problems.append(f"{where}: params file {params_file} does not exist in {config_dir}")
        elif not yaml_node_keys(path) & {name, "/**"}:
            problems.append(f"{where}: node '{name}' has no section in {params_file}")
    return problems


def profile_problems(
    profile_name: str, specs: tuple[NodeSpec, ...], scripts: dict[str, set[str]], config_dir: Path
) -> list[str]:
    """A graph profile: executables that exist, params files that exist, control.yaml loaded last."""
    problems = []
    for spec in specs:
        where = f"profile '{profile_name}' node '{spec.name}'"
        files = list(spec.params_files)
        problems += node_problems(where, spec.package, spec.executable, spec.name, files, scripts, config_dir)
        if not files or files[-1] != CONTROL_FILE:
            problems.append(f"{where}: loads {files}; {CONTROL_FILE} must come last")
    return problems


def launch_problems(
    source: str,
    file_name: str,
    scripts: dict[str, set[str]],
    config_dir: Path,
    profiles: dict[str, tuple[NodeSpec, ...]] = PROFILES,
) -> list[str]:
    """Cross-check one launch file against the packages' console scripts, the profiles and config/."""
    tree = ast.parse(source, filename=file_name)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    problems = []

    if not any(isinstance(s, ast.FunctionDef) and s.name == "generate_launch_description" for s in tree.body):
        problems.append(f"{file_name}: no top-level generate_launch_description()")

    nodes = [c for c in calls if call_name(c) == "Node"]
    if not nodes:
        problems.append(f"{file_name}: starts no Node")
    for profile_call in (c for c in calls if call_name(c) == "profile"):
        name = constant_str(profile_call.args[0]) if profile_call.args else None
        if name not in profiles:
            problems.append(
                f"{file_name}:{profile_call.lineno}: profile({name!r}) is not one of {sorted(profiles)}"
            )
        else:
            problems += [
                f"{file_name}: {p}" for p in profile_problems(name, profiles[name], scripts, config_dir)
            ]
    for node in nodes:
        where = f"{file_name}:{node.lineno}"
        if any(k.arg is None for k in node.keywords):  # Node(**spec.node_action_kwargs(...))
            if not any(call_name(c) == "profile" for c in calls):
                problems.append(
                    f"{where}: Node(**...) must build from vla_bringup.profiles.profile('<name>')"
                )
            continue
        package = constant_str(keyword(node, "package"))
        executable = constant_str(keyword(node, "executable"))
        name = constant_str(keyword(node, "name"))
        if package is None or executable is None or name is None:
            problems.append(f"{where}: Node needs literal package=, executable= and name= strings")
            continue
        parameters = keyword(node, "parameters")
        files = [
            f
            for f in (string_constants(parameters) if parameters is not None else [])
            if PARAMS_FILE_RE.match(f)
        ]
        problems += node_problems(where, package, executable, name, files, scripts, config_dir)

    for text in string_constants(tree):
        if PARAMS_FILE_RE.match(text) and not (config_dir / text).is_file():
            problems.append(f"{file_name}: references {text}, which does not exist in {config_dir}")

    for call in calls:
        if call_name(call) in ("FindPackageShare", "get_package_share_directory") and call.args:
            share = constant_str(call.args[0])
            if share not in scripts and share not in EXTERNAL_SHARE_PACKAGES:
                problems.append(f"{file_name}:{call.lineno}: looks up unknown package share '{share}'")

    declared = {constant_str(c.args[0]) for c in calls if call_name(c) == "DeclareLaunchArgument" and c.args}
    used = {
        c.lineno: constant_str(c.args[0]) for c in calls if call_name(c) == "LaunchConfiguration" and c.args
    }
    for lineno, name in sorted(used.items()):
        if name is None:
            problems.append(f"{file_name}:{lineno}: LaunchConfiguration needs a literal name to be checked")
        elif name not in declared:
            problems.append(
                f"{file_name}:{lineno}: LaunchConfiguration('{name}') has no DeclareLaunchArgument"
            )

    if not any(
        call_name(c) == "SetEnvironmentVariable" and "FASTDDS_DEFAULT_PROFILES_FILE" in string_constants(c)
        for c in calls
    ):
        problems.append(f"{file_name}: does not set FASTDDS_DEFAULT_PROFILES_FILE (loopback DDS profile)")
    return problems


def control_problems(config_dir: Path) -> list[str]:
    """control.yaml sets '/**' control_hz, and no other params file copies the control period."""
    control = yaml.safe_load((config_dir / CONTROL_FILE).read_text()) or {}
    problems = []
    if set(control) != {"/**"} or "control_hz" not in control["/**"].get("ros__parameters", {}):
        problems.append(f"{CONTROL_FILE}: expected only '/**' with control_hz, got {control}")
    for path in sorted(config_dir.glob("*.yaml")):
        if path.name == CONTROL_FILE:
            continue
        for node_name, body in (yaml.safe_load(path.read_text()) or {}).items():
            copies = CONTROL_ONLY_KEYS & set((body or {}).get("ros__parameters", {}))
            if copies:
                problems.append(
                    f"{path.name}: '{node_name}' sets {sorted(copies)}; {CONTROL_FILE} defines it"
                )
    return problems


def profile_names(source: str) -> set[str | None]:
    """The literal names a launch file passes to profile(...)."""
    return {
        constant_str(c.args[0]) if c.args else None
        for c in ast.walk(ast.parse(source))
        if isinstance(c, ast.Call) and call_name(c) == "profile"
    }


def all_scripts() -> dict[str, set[str]]:
    return {package: set(console_scripts(package)) for package in PACKAGES}


def launch_arguments(source: str) -> dict[str, str | None]:
    """Declared launch argument -> its literal default (None when not a literal)."""
    declared = {}
    for call in ast.walk(ast.parse(source)):
        if isinstance(call, ast.Call) and call_name(call) == "DeclareLaunchArgument" and call.args:
            declared[constant_str(call.args[0])] = constant_str(keyword(call, "default_value"))
    return declared


# --------------------------------------------------------------------------------------------------
# package.xml, setup.py, setup.cfg, resource marker


def test_every_source_folder_is_an_expected_package():
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml(package):
    root = package_xml(package)
    assert root.tag == "package" and root.get("format") == "3", f"{package}: package.xml must be format 3"
    assert root.findtext("name") == package
    assert root.findtext("export/build_type") == "ament_python"
    assert root.findtext("license") == "Apache-2.0"
    maintainer = root.find("maintainer")
    assert (
        maintainer is not None
        and maintainer.text == "vla-stack maintainers"
        and "@" in maintainer.get("email", "")
    )
    assert root.findtext("version") == setup_kwargs(package)["version"], (
        "package.xml and setup.py versions differ"
    )
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}


def project_dependencies(package: str) -> set[str]:
    """Every project package `package` depends on, directly or not, per the package.xml files."""
    seen: set[str] = set()
    todo = [package] if package in PACKAGES else []  # an external package (e.g. builtin_interfaces)
    while todo:
        for dep in exec_depends(todo.pop()) & set(PACKAGES):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_project_dependencies():
    assert "vla_common" in exec_depends("vla_actuation")
    assert {"vla_perception", "vla_policy", "vla_actuation", "vla_sim"} <= exec_depends("vla_bringup")
    assert set(PACKAGES) - {"vla_stack"} <= project_dependencies("vla_stack") | {"vla_stack"}
    for package in PACKAGES:
        assert package not in project_dependencies(package), (
            f"{package} depends on itself: colcon refuses cycles"
        )


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_what_the_code_imports(package):
    declared = exec_depends(package)
    problems = []
    for path in sorted((SRC / package / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                key = ROS_IMPORT_KEYS.get(top)
                if key is None and top.endswith(("_msgs", "_srvs", "_interfaces")):
                    key = top
                if key is None and top.startswith("vla_") and top != package:
                    key = top
                if key is None or key in declared:
                    continue
                where = f"{path.relative_to(REPO)} imports {top}"
                if package in project_dependencies(key):
                    problems.append(
                        f"{where}, which depends on {package}: a cycle colcon cannot build; move the code"
                    )
                else:
                    problems.append(
                        f"{where}: add <exec_depend>{key}</exec_depend> to src/{package}/package.xml"
                    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", PACKAGES)
def test_setup_py(package):
    kwargs = setup_kwargs(package)
    assert kwargs["name"] == package
    files = data_files(package)
    assert f"resource/{package}" in files.get("share/ament_index/resource_index/packages", [])
    assert (SRC / package / "resource" / package).is_file(), f"resource/{package} marker is missing"
    assert "package.xml" in files.get(f"share/{package}", [])
    module_dirs = sorted(p.parent for p in (SRC / package / package).rglob("__init__.py"))
    expected_packages = {".".join(d.relative_to(SRC / package).parts) for d in module_dirs}
    assert set(kwargs["packages"]) == expected_packages
    assert console_scripts(package) == EXPECTED_SCRIPTS[package]


@pytest.mark.parametrize("package", PACKAGES)
def test_setup_cfg_installs_executables_where_ros2_run_looks(package):
    cfg = configparser.ConfigParser()
    assert cfg.read(SRC / package / "setup.cfg"), f"src/{package}/setup.cfg is missing"
    assert cfg.get("develop", "script_dir") == f"$base/lib/{package}"
    assert cfg.get("install", "install_scripts") == f"$base/lib/{package}"


def test_vla_sim_ships_its_models():
    assert "models/*.xml" in setup_kwargs("vla_sim")["package_data"]["vla_sim"]


@pytest.mark.parametrize(
    ("package", "script"), [(p, s) for p in PACKAGES for s in EXPECTED_SCRIPTS[p]], ids=lambda v: str(v)
)
def test_console_script_resolves_to_a_main(package, script):
    target = console_scripts(package)[script]
    problems = entry_point_problems(SRC, package, script, target, setup_kwargs(package)["packages"])
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# vla_bringup: launch/ and config/ reach share/vla_bringup


@pytest.mark.parametrize(
    ("folder", "patterns"), [("launch", ["*.launch.py"]), ("config", ["*.yaml", "*.xml"])]
)
def test_bringup_installs_repo_folder(folder, patterns):
    link = SRC / "vla_bringup" / folder
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)), f"{link} must be a relative symlink"
    assert link.resolve() == (REPO / folder).resolve()
    installed = data_files("vla_bringup").get(f"share/vla_bringup/{folder}", [])
    repo_files = sorted(p.name for pattern in patterns for p in (REPO / folder).glob(pattern))
    assert repo_files, f"{folder}/ holds no {patterns}"
    assert sorted(Path(f).name for f in installed) == repo_files
    for entry in installed:
        assert not entry.startswith(("/", "..")), f"data file '{entry}' must stay inside src/vla_bringup"
        assert (SRC / "vla_bringup" / entry).resolve() == (REPO / folder / Path(entry).name).resolve()


# --------------------------------------------------------------------------------------------------
# Launch files and params YAML


def test_expected_launch_files_exist():
    assert {p.name for p in LAUNCH_DIR.glob("*.launch.py")} >= EXPECTED_LAUNCH_FILES


@pytest.mark.parametrize("launch_file", sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py")))
def test_launch_file(launch_file):
    source = (LAUNCH_DIR / launch_file).read_text()
    problems = launch_problems(source, launch_file, all_scripts(), CONFIG_DIR)
    assert not problems, "\n".join(problems)
    if launch_file in LAUNCH_PROFILES:
        assert profile_names(source) == {LAUNCH_PROFILES[launch_file]}


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_profile(profile_name):
    problems = profile_problems(profile_name, PROFILES[profile_name], all_scripts(), CONFIG_DIR)
    assert not problems, "\n".join(problems)
    clocks = {spec.name: spec.parameters.get("use_sim_time") for spec in PROFILES[profile_name]}
    assert clocks == USE_SIM_TIME[profile_name]


def test_control_rate_is_defined_once():
    assert control_problems(CONFIG_DIR) == []


def test_launch_arguments():
    sim = launch_arguments((LAUNCH_DIR / "sim.launch.py").read_text())
    assert sim.get("policy") == "scripted"
    assert {"instruction", "seed"} <= set(sim)
    widowx_source = (LAUNCH_DIR / "widowx.launch.py").read_text()
    assert launch_arguments(widowx_source).get("start_driver") == "true"
    assert {"xsarm_ros_control.launch.py", "interbotix_xsarm_ros_control", "wx250s"} <= set(
        string_constants(ast.parse(widowx_source))
    )
    assert "xsarm_gz_classic.launch.py" in string_constants(
        ast.parse((LAUNCH_DIR / "gazebo.launch.py").read_text())
    )


@pytest.mark.parametrize("config_file", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_params_yaml(config_file):
    problems = yaml_problems(CONFIG_DIR / config_file)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("config_file", "sim_time"), [("widowx.yaml", False), ("gazebo.yaml", True)])
def test_override_files_set_the_clock(config_file, sim_time):
    data = yaml.safe_load((CONFIG_DIR / config_file).read_text())
    assert set(data) == {"perception", "policy", "actuation"}
    for node_name, body in data.items():
        assert body["ros__parameters"]["use_sim_time"] is sim_time, f"{config_file}: {node_name}"


# --------------------------------------------------------------------------------------------------
# The checkers catch mistakes (a check that cannot fail proves nothing)


def test_launch_checker_catches_wrong_names(tmp_path):
    (tmp_path / "policy.yaml").write_text("policy:\n  ros__parameters: {}\n")
    (tmp_path / "fastdds_localhost.xml").write_text("<dds/>")
    scripts = {"vla_policy": {"policy_node"}}
    good = (
        "def generate_launch_description():\n"
        "    SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', _config('fastdds_localhost.xml'))\n"
        "    DeclareLaunchArgument('policy')\n"
        "    return Node(package='vla_policy', executable='policy_node', name='policy',\n"
        "                parameters=[_config('policy.yaml'), {'backend': LaunchConfiguration('policy')}])\n"
    )
    assert launch_problems(good, "good.launch.py", scripts, tmp_path) == []
    mutations = {
        "executable='policy_node'": ("executable='policy_nod'", "not a console_script"),
        "package='vla_policy'": ("package='vla_polcy'", "not built from this repository"),
        "'policy.yaml'": ("'polcy.yaml'", "polcy.yaml does not exist"),
        "name='policy'": ("name='polcy'", "has no section in policy.yaml"),
        "DeclareLaunchArgument('policy')": ("DeclareLaunchArgument('backend')", "no DeclareLaunchArgument"),
        "'FASTDDS_DEFAULT_PROFILES_FILE'": ("'FASTDDS_PROFILE'", "FASTDDS_DEFAULT_PROFILES_FILE"),
        "executable='policy_node', ": ("executable=EXE, ", "literal package="),
        "LaunchConfiguration('policy')": ("LaunchConfiguration(NAME)", "literal name"),
    }
    for original, (broken, expected) in mutations.items():
        assert original in good
        problems = launch_problems(good.replace(original, broken), "bad.launch.py", scripts, tmp_path)
        assert any(expected in p for p in problems), (broken, problems)


def test_launch_checker_catches_wrong_profiles(tmp_path):
    (tmp_path / "control.yaml").write_text("/**:\n  ros__parameters: {control_hz: 5.0}\n")
    (tmp_path / "policy.yaml").write_text("policy:\n  ros__parameters: {}\n")
    (tmp_path / "fastdds_localhost.xml").write_text("<dds/>")
    scripts = {"vla_policy": {"policy_node"}}
    good_spec = NodeSpec("policy", "vla_policy.policy_node", ("policy", "control"))
    source = (
        "def generate_launch_description():\n"
        "    SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', _config('fastdds_localhost.xml'))\n"
        "    return [Node(output='screen', **s.node_action_kwargs(_config)) for s in profile('graph')]\n"
    )
    assert launch_problems(source, "good.launch.py", scripts, tmp_path, {"graph": (good_spec,)}) == []
    broken_specs = {
        "not a console_script": NodeSpec("policy", "vla_policy.policy_nod", ("policy", "control")),
        "polcy.yaml does not exist": NodeSpec("policy", "vla_policy.policy_node", ("polcy", "control")),
        "has no section in policy.yaml": NodeSpec("polcy", "vla_policy.policy_node", ("policy", "control")),
        "control.yaml must come last": NodeSpec("policy", "vla_policy.policy_node", ("control", "policy")),
    }
    for expected, spec in broken_specs.items():
        problems = launch_problems(source, "bad.launch.py", scripts, tmp_path, {"graph": (spec,)})
        assert any(expected in p for p in problems), (expected, problems)
    unknown = launch_problems(source.replace("'graph'", "'grph'"), "bad.launch.py", scripts, tmp_path, {})
    assert any("is not one of" in p for p in unknown), unknown
    unbuilt = source.replace("for s in profile('graph')", "for s in SPECS")
    problems = launch_problems(unbuilt, "bad.launch.py", scripts, tmp_path, {"graph": (good_spec,)})
    assert any("must build from vla_bringup.profiles" in p for p in problems), problems


def test_control_checker_catches_a_copied_period(tmp_path):
    (tmp_path / "control.yaml").write_text("/**:\n  ros__parameters: {control_hz: 5.0}\n")
    (tmp_path / "sim.yaml").write_text("sim:\n  ros__parameters: {seed: 0}\n")
    assert control_problems(tmp_path) == []
    (tmp_path / "sim.yaml").write_text("sim:\n  ros__parameters: {seed: 0, step_dt_s: 0.2}\n")
    assert any("'sim' sets ['step_dt_s']" in p for p in control_problems(tmp_path))
    (tmp_path / "control.yaml").write_text("sim:\n  ros__parameters: {control_hz: 5.0}\n")
    assert any("expected only '/**'" in p for p in control_problems(tmp_path))


def test_entry_point_checker_catches_missing_main(tmp_path):
    module_dir = tmp_path / "pkg" / "pkg"
    module_dir.mkdir(parents=True)
    (module_dir / "__init__.py").write_text("")
    (module_dir / "node.py").write_text("def main(args=None):\n    pass\n")
    assert entry_point_problems(tmp_path, "pkg", "node", "pkg.node:main", ["pkg"]) == []
    assert "does not exist" in entry_point_problems(tmp_path, "pkg", "x", "pkg.absent:main", ["pkg"])[0]
    assert (
        "not in setup.py's packages"
        in entry_point_problems(tmp_path, "pkg", "x", "other.node:main", ["pkg"])[0]
    )
    (module_dir / "node.py").write_text("def run():\n    pass\n")
    assert "not defined" in entry_point_problems(tmp_path, "pkg", "node", "pkg.node:main", ["pkg"])[0]
    (module_dir / "node.py").write_text("def main(argv):\n    pass\n")
    assert "passes none" in entry_point_problems(tmp_path, "pkg", "node", "pkg.node:main", ["pkg"])[0]


def test_yaml_checker_catches_bad_params_files(tmp_path):
    cases = {
        "perception:\n  ros__parameters:\n    rate: 5\n": None,
        "/**:\n  ros__parameters: {}\n": None,
        "percepton:\n  ros__parameters: {}\n": "not a node name",
        "perception:\n  rate: 5\n": "no 'ros__parameters'",
        "- a\n- b\n": "non-empty mapping",
        "perception: [\n": "not valid YAML",
    }
    for text, expected in cases.items():
        path = tmp_path / "case.yaml"
        path.write_text(text)
        problems = yaml_problems(path)
        if expected is None:
            assert problems == [], text
        else:
            assert any(expected in p for p in problems), (text, problems)
