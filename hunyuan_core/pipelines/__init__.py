"""Procedures that chain several models of the core (today: the refiner stage, image in, image out)."""

from .refiner import RefinerSettings, refine_image

__all__ = ["RefinerSettings", "refine_image"]
