"""Ray awareness: file names, line formats, multi-line joining, and the LineHandler using them."""

from shipper.ray.handler import RayHandler, make_ray_handler

__all__ = ["RayHandler", "make_ray_handler"]
