"""The two behaviours the project reproduces (see FACTS.md and docs):

* ``thesis``   - Kazakos (2017) as written: 300 mm cube for every subject, unclipped joints, masked RGB
  standardised per channel (eqs. 4.10-4.12), 2x2 pooling, classical momentum, batch 128, loss 1/(2J).
* ``icip2018`` - the author's later Lasagne code: 261 mm cube for test subject 2, joints clipped to [-1, 1],
  RGB in [0, 1] plus the hand mask as a 4th channel, 3x3/3 pooling, Nesterov momentum, batch 64, loss 1/2,
  restore the best weights at each learning-rate halving.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    cube_mm: float            # cube edge for training and test subject 1
    cube_mm_subject2: float   # cube edge for test subject 2
    clip_joints: bool         # clip normalised joints to [-1, 1]
    rgb_mode: str             # "standardise" (thesis) or "unit+mask" (icip2018)
    pool: int                 # max-pooling size = stride
    nesterov: bool
    batch_size: int
    loss_scale: str           # "1/(2J)" (eq. 4.14) or "1/2"
    max_epochs: int
    patience: int             # epochs without improvement before halving the learning rate
    max_halvings: int         # halvings before training stops
    restore_best_on_halving: bool


PROFILES: dict[str, Profile] = {
    "thesis": Profile("thesis", 300.0, 300.0, False, "standardise", 2, False, 128, "1/(2J)", 100, 5, 5, False),
    "icip2018": Profile("icip2018", 300.0, 261.0, True, "unit+mask", 3, True, 64, "1/2", 50, 6, 5, True),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile '{name}' (choose from {', '.join(PROFILES)})") from None
