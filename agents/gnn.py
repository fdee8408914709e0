"""The graph policy: a message-passing features extractor and a pair-scoring head.

One set of weights serves any number of tasks and devices within the maxima:
every layer is shared across task rows, device rows and (task, device) pairs,
and padding is masked out of every sum. So a policy trained on 4 devices runs
on 2 or 8.

Written in plain torch (``index_add_`` for message passing) rather than
torch_geometric: the graphs are small and padded to fixed shapes, the two
layer types needed are a few lines each, and it saves a dependency whose
compiled extensions do not install everywhere.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


# The forward passes call the layers' functions on their weights rather than
# the modules: the same operations on the same tensors (so the same numbers),
# without the module-call machinery, which costs more than the arithmetic at
# these sizes (one decision's forward runs some forty layers on 64 rows).
def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def _run_mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """What ``mlp(x)`` computes, for a :func:`_mlp`."""
    first, _, second = mlp
    return F.linear(torch.relu(F.linear(x, first.weight, first.bias)), second.weight,
                    second.bias)


def _run_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class DagGnnExtractor(BaseFeaturesExtractor):
    """Embeds tasks by message passing over the DAG, devices by their telemetry.

    Each round sends messages parent -> child and child -> parent along the
    window's edges and updates every task with a residual MLP. Task embeddings
    are then summed per job (added back to each task) and globally, with the
    devices and the queue features, into a global embedding.

    The output is flat, ``[tasks (N x H), devices (G x H), global (H)]``, for
    :class:`PairScoringHead` to unflatten.

    :param observation_space: the environment's ``Dict`` space
    :param hidden: embedding width ``H``
    :param rounds: message-passing rounds
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int = 64, rounds: int = 3):
        self.n_tasks, task_f = observation_space["tasks"].shape
        self.n_devices, device_f = observation_space["devices"].shape
        queue_f = observation_space["queue"].shape[0]
        super().__init__(observation_space,
                         features_dim=(self.n_tasks + self.n_devices + 1) * hidden)
        self.hidden, self.rounds = hidden, rounds
        self.task_in = _mlp(task_f, hidden, hidden)
        self.device_in = _mlp(device_f, hidden, hidden)
        self.down = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(rounds))
        self.up = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(rounds))
        self.update = nn.ModuleList(_mlp(3 * hidden, hidden, hidden) for _ in range(rounds))
        self.norm = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(rounds))
        self.job_mix = _mlp(2 * hidden, hidden, hidden)
        self.global_out = _mlp(2 * hidden + queue_f, hidden, hidden)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        b, n, h = obs["tasks"].shape[0], self.n_tasks, self.hidden
        task_mask = obs["task_mask"].unsqueeze(-1)
        x = _run_mlp(self.task_in, obs["tasks"]) * task_mask
        flat = x.reshape(b * n, h)
        edges = obs["edges"].long()
        job = obs["task_job"].long()
        if b > 1:  # each observation's rows are numbered after the ones before it
            offset = (torch.arange(b, device=edges.device) * n).view(b, 1)
            edges, job = edges + offset.unsqueeze(-1), job + offset
        src = edges[..., 0].reshape(-1)
        dst = edges[..., 1].reshape(-1)
        emask = obs["edge_mask"].reshape(-1, 1)
        row_mask = task_mask.reshape(b * n, 1)
        for r in range(self.rounds):
            # each message is a row of the layer applied to every task, taken
            # at the edge's end: the rows the layer would give the gathered
            # ends, at a quarter of the work (a window has 64 tasks and 256
            # edge slots, most of them padding)
            down = torch.zeros_like(flat).index_add_(0, dst, _linear(self.down[r], flat)[src] * emask)
            up = torch.zeros_like(flat).index_add_(0, src, _linear(self.up[r], flat)[dst] * emask)
            flat = _run_norm(self.norm[r], flat + _run_mlp(self.update[r],
                                                           torch.cat([flat, down, up], dim=-1)))
            flat = flat * row_mask
        # per-job sums, scattered back to each task of the job
        job = job.reshape(-1)
        job_sum = torch.zeros_like(flat).index_add_(0, job, flat)
        tasks = flat + _run_mlp(self.job_mix, torch.cat([flat, job_sum[job]], dim=-1))
        tasks = tasks.reshape(b, n, h) * task_mask
        device_mask = obs["device_mask"].unsqueeze(-1)
        devices = _run_mlp(self.device_in, obs["devices"]) * device_mask
        glob = _run_mlp(self.global_out, torch.cat([tasks.sum(1) / n, devices.sum(1) / self.n_devices,
                                                   obs["queue"]], dim=-1))
        return torch.cat([tasks.reshape(b, -1), devices.reshape(b, -1), glob], dim=-1)


class PairScoringHead(nn.Module):
    """Scores every (ready slot, device) pair with one shared MLP, plus a wait
    logit from the global embedding; the value comes from the global embedding.

    Plays the part of SB3's ``mlp_extractor``: its policy latent *is* the
    logits, in the environment's action order (slot ``i``, device ``j`` at
    ``i * G + j``; wait last).
    """

    def __init__(self, n_tasks: int, n_ready: int, n_devices: int, hidden: int):
        super().__init__()
        self.n_tasks, self.n_ready, self.n_devices, self.hidden = n_tasks, n_ready, n_devices, hidden
        self.pair = _mlp(3 * hidden, hidden, 1)
        self.wait = _mlp(hidden, hidden, 1)
        self.value = _mlp(hidden, hidden, hidden)
        self.latent_dim_pi = n_ready * n_devices + 1
        self.latent_dim_vf = hidden

    def _split(self, features: torch.Tensor):
        b, h, n, g = features.shape[0], self.hidden, self.n_tasks, self.n_devices
        tasks = features[:, : n * h].reshape(b, n, h)
        devices = features[:, n * h: (n + g) * h].reshape(b, g, h)
        return tasks, devices, features[:, (n + g) * h:]

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        tasks, devices, glob = self._split(features)
        b, r, g, h = tasks.shape[0], self.n_ready, self.n_devices, self.hidden
        ready = tasks[:, :r].unsqueeze(2).expand(b, r, g, h)
        devs = devices.unsqueeze(1).expand(b, r, g, h)
        globs = glob.view(b, 1, 1, h).expand(b, r, g, h)
        pairs = _run_mlp(self.pair, torch.cat([ready, devs, globs], dim=-1)).reshape(b, r * g)
        return torch.cat([pairs, _run_mlp(self.wait, glob)], dim=-1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return _run_mlp(self.value, self._split(features)[2])

    def forward(self, features: torch.Tensor):
        return self.forward_actor(features), self.forward_critic(features)


class GnnMaskablePolicy(MaskableActorCriticPolicy):
    """MaskablePPO's actor-critic with :class:`DagGnnExtractor` and
    :class:`PairScoringHead`; the stock flatten-then-linear action net would tie
    the weights to the maxima, so it is replaced by the identity."""

    def __init__(self, observation_space, action_space, lr_schedule, hidden: int = 64,
                 rounds: int = 3, n_ready: int = 16, **kwargs):
        self._n_ready = n_ready
        kwargs.setdefault("features_extractor_class", DagGnnExtractor)
        kwargs.setdefault("features_extractor_kwargs", {"hidden": hidden, "rounds": rounds})
        self._hidden = hidden
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        n_tasks = self.observation_space["tasks"].shape[0]
        n_devices = self.observation_space["devices"].shape[0]
        self.mlp_extractor = PairScoringHead(n_tasks, self._n_ready, n_devices, self._hidden)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        # as SB3 does for its action net: near-uniform logits at the start
        for layer in (self.mlp_extractor.pair[-1], self.mlp_extractor.wait[-1]):
            nn.init.orthogonal_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)
