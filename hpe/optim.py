"""Lasagne's momentum updates (lasagne.updates), which the thesis's results were trained with.

classical: v <- mu v - lr g;  w <- w + v
nesterov:  v <- mu v - lr g;  w <- w + mu v - lr g
Unlike torch.optim.SGD the velocity carries the learning rate, which matters when the rate is halved.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


def _plain(method):
    """An Optimizer method without torch's ``_disable_dynamo`` wrapper, whose first call imports torch._dynamo:
    two seconds of every ``hpe train`` start on a CPU.  hpe compiles nets, never the optimizer, so nothing is lost."""
    return getattr(method, "__wrapped__", method)


class LasagneMomentum(Optimizer):
    add_param_group = _plain(Optimizer.add_param_group)
    zero_grad = _plain(Optimizer.zero_grad)
    state_dict = _plain(Optimizer.state_dict)
    load_state_dict = _plain(Optimizer.load_state_dict)

    def __init__(self, params, lr: float, momentum: float = 0.9, nesterov: bool = False):
        if not (lr > 0 and 0 <= momentum <= 1):  # the config's ranges
            raise ValueError(f"LasagneMomentum: lr must be > 0 and momentum in [0, 1], got lr {lr}, momentum {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})

    def step(self, closure=None):
        with torch.no_grad():  # a context, not a decorator: mutmut leaves decorated functions unmutated
            self._step()

    def _step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            vel = []
            for p in params:
                st = self.state[p]
                if "velocity" not in st:
                    st["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                vel.append(st["velocity"])
            lr, mu = group["lr"], group["momentum"]
            torch._foreach_mul_(vel, mu)
            torch._foreach_add_(vel, grads, alpha=-lr)
            if group["nesterov"]:
                torch._foreach_add_(params, vel, alpha=mu)
                torch._foreach_add_(params, grads, alpha=-lr)
            else:
                torch._foreach_add_(params, vel)
