"""Command-line entry points. Each module keeps its imports light."""
