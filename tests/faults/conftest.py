import sys
from pathlib import Path

# graph_helpers (tests/ros) and the injector (here) import as top-level modules, as in tests/ros.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "ros"))
