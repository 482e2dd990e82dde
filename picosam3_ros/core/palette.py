"""One colour per prompt, shared by the overlays (node, demo, bag_eval figures) and the teleop page.

Distinct, colour-blind-friendly-ish RGB colours (Sasha Trubetskoy's list of 20 distinct
colours, first 12), cycled; a box, its table row and its mask then share a colour everywhere.
"""

from __future__ import annotations

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (255, 225, 25),
    (170, 110, 40),
)


def prompt_color(index: int) -> tuple[int, int, int]:
    """RGB colour for a 1-based prompt index or id (0 and negatives wrap around too)."""
    return PALETTE[(int(index) - 1) % len(PALETTE)]
