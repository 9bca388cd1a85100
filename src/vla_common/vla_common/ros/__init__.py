"""The ROS layer shared by the stack's nodes (the only place besides *_node.py that imports rclpy)."""
