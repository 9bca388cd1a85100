"""Training the Octo-style policy on recorded demonstrations (torch, no ROS)."""
