#!/usr/bin/env bash
# Source ROS 2 Jazzy and the vla-stack workspace, then run the given command (default: sim launch).
set -e
# setup.bash reads unset variables, so source it before turning on nounset.
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
set -u
exec "$@"
