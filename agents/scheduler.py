"""A trained checkpoint as a :class:`rlsched.schedulers.Scheduler`.

The policy sees live or simulated views through the same encoder it trained
with (:func:`envs.encoder.encode`); the checkpoint's card says which encoder
version and maxima that was, and a mismatch is refused with one clear line.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from envs.advice import Advisors
from envs.encoder import (
    READABLE_VERSIONS,
    EpisodeStatics,
    Maxima,
    action_mask,
    as_version,
    empty_observation,
    encode,
    placement_of,
)
from rlsched.errors import InputError
from rlsched.schedulers import Scheduler
from rlsched.view import ClusterView, Placement


def card_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def read_card(checkpoint: str | Path) -> dict[str, Any]:
    """The card beside a checkpoint; :class:`InputError` if missing or corrupt."""
    path = card_path(checkpoint)
    if not Path(checkpoint).is_file():
        raise InputError(str(checkpoint), "no such checkpoint file")
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(str(checkpoint), f"has no card {path.name} beside it") from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(str(path), f"corrupt checkpoint card ({e})") from None
    if not isinstance(card, dict) or "encoder_version" not in card or "maxima" not in card:
        raise InputError(str(path), "not a checkpoint card (needs encoder_version and maxima)")
    if card["encoder_version"] not in READABLE_VERSIONS:
        raise InputError(str(checkpoint), f"was trained with encoder version "
                         f"{card['encoder_version']}, this rlsched reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}: retrain it (rlsched train)")
    return card


class _NoOptimizer:
    """What a policy loaded to decide holds in place of its optimizer.

    SB3 builds the optimizer along with the policy (ours twice), and torch's
    first optimizer imports its compiler stack: some 2.4 s of a process's
    first checkpoint load, every ``evaluate`` worker's and the daemon's, for
    an optimizer no decision uses. This takes the saved optimizer state as
    SB3's loader hands it over, drops it, and refuses to step or to be
    saved: a policy to train again is loaded with ``MaskablePPO.load`` (as
    ``train --resume`` does)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        pass

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        raise RuntimeError("this policy was loaded to decide, not to train")

    step = state_dict = zero_grad


def _load_to_decide(algorithm: Any, checkpoint: str | Path) -> Any:
    """``algorithm.load`` of ``checkpoint`` on the CPU, its policy holding a
    :class:`_NoOptimizer`: the saved policy arguments, read first from the
    zip's ``data``, with the optimizer class replaced."""
    from stable_baselines3.common.save_util import json_to_data

    with zipfile.ZipFile(checkpoint) as archive:
        data = json_to_data(archive.read("data").decode())
    kwargs = {**data.get("policy_kwargs", {}), "optimizer_class": _NoOptimizer}
    return algorithm.load(str(checkpoint), device="cpu", custom_objects={"policy_kwargs": kwargs})


class RLScheduler(Scheduler):
    """Places one task per call where the policy's most likely valid action says.

    :param checkpoint: path of a ``.zip`` saved by ``rlsched train``
    :param deterministic: take the most likely action (else sample)
    """

    costly = True

    def __init__(self, checkpoint: str | Path, deterministic: bool = True) -> None:
        from sb3_contrib import MaskablePPO

        self.card = read_card(checkpoint)
        self.maxima = Maxima(**self.card["maxima"])
        #: the encoder version it trained with: it is handed that version's observation
        self.encoder_version = int(self.card["encoder_version"])
        self.name = f"rl:{checkpoint}"
        try:
            self.model = _load_to_decide(MaskablePPO, checkpoint)
        except Exception as e:  # a zip that SB3 cannot read, whatever the reason
            raise InputError(str(checkpoint), f"cannot load the checkpoint ({e})") from None
        expected = self.model.observation_space["tasks"].shape[0]
        if expected != self.maxima.tasks or self.model.action_space.n != self.maxima.n_actions:
            raise InputError(str(checkpoint), "the card's maxima do not match the policy's "
                             "spaces: the card belongs to another checkpoint")
        width = as_version(empty_observation(self.maxima), self.encoder_version)["tasks"].shape[1]
        reads = self.model.observation_space["tasks"].shape[1]
        if reads != width:
            raise InputError(str(checkpoint), f"its card says encoder version "
                             f"{self.encoder_version}, whose tasks have {width} columns, but the "
                             f"policy reads {reads}: the card belongs to another checkpoint")
        self.deterministic = deterministic
        self._huge_neg = torch.tensor(-1e8)  # the value SB3 gives a masked action's logit
        from gymnasium.spaces import Box
        from stable_baselines3.common.preprocessing import is_image_space

        self._plain_boxes = all(isinstance(sp, Box) and not is_image_space(sp)
                                for sp in self.model.observation_space.spaces.values())
        self._keys = tuple(sorted(self.model.observation_space.spaces))
        #: the deterministic decision's network as one graph (:func:`_trace`)
        self._traced: nn.Module | None = None
        if deterministic and self._plain_boxes:
            self._warm_up()
        self.advisors = Advisors()
        self.reset(0)

    def _warm_up(self) -> None:
        """Trace the network, and run the graph as its first calls do
        (profiling passes), on an empty observation: what would otherwise
        be paid at the first decisions of a run, tens of milliseconds, is
        paid here, when the checkpoint loads."""
        obs = as_version(empty_observation(self.maxima), self.encoder_version)
        mask = np.ones(self.maxima.n_actions, dtype=bool)
        for _ in range(3):
            self._act(obs, mask)

    def _act(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> int:
        """The policy's action for one observation: what ``model.predict``
        returns, without its per-call walk over every module to set eval
        mode (done once, here, only if something turned training back on)
        and under ``torch.inference_mode``. The most likely action is taken
        from the masked logits by the very operations SB3's masked
        categorical performs, without building the distribution objects
        (with their argument checks) at every call; sampling goes through SB3."""
        policy = self.model.policy
        if policy.training:
            policy.set_training_mode(False)
        # one thread (the caller's count given back after), as training and
        # bench policy run it: a decision's tensors are small, so more threads
        # only hand work off, and where other processes' threads compete for
        # the cores, threads waiting on each other can slow a decision manyfold
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            return self._act_on_one_thread(obs, mask)
        finally:
            if threads != 1:
                torch.set_num_threads(threads)

    def _act_on_one_thread(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> int:
        from stable_baselines3.common.policies import BaseModel

        policy = self.model.policy
        with torch.inference_mode():
            if not self.deterministic:
                tensor, _ = policy.obs_to_tensor(obs)
                return int(policy.get_distribution(tensor, action_masks=mask).get_actions(
                    deterministic=False).reshape(-1)[0])
            space = policy.observation_space
            tensor = {k: torch.as_tensor(v.reshape((-1, *space[k].shape)))
                      for k, v in obs.items()}
            allowed = torch.as_tensor(mask, dtype=torch.bool).reshape(1, -1)
            if self._plain_boxes:  # what SB3's preprocessing does to a Box: float32
                inputs = tuple(tensor[k].float() for k in self._keys)
                if self._traced is None:
                    self._traced = _trace(_MostLikely(policy, self._keys, self.maxima.n_actions,
                                                      self._huge_neg), (*inputs, allowed))
                return int(self._traced(*inputs, allowed))
            features = BaseModel.extract_features(policy, tensor, policy.pi_features_extractor)
            logits = policy.action_net(policy.mlp_extractor.forward_actor(features))
            return int(_most_likely(logits.view(-1, self.maxima.n_actions), allowed,
                                    self._huge_neg))

    def reset(self, seed: int = 0) -> None:
        self._statics: EpisodeStatics | None = None
        self._last_time: float | None = None
        self.advisors.reset(seed)

    def _decide(self, view: ClusterView) -> list[Placement]:
        if len(view.devices) > self.maxima.devices:
            raise InputError(self.name, f"the pool has {len(view.devices)} devices; this policy "
                             f"was built for at most {self.maxima.devices}")
        st = self._statics
        if st is None or st.table is not view.table or st.pool is not view.pool:
            st = self._statics = EpisodeStatics(view.table, view.pool, view.predicted,
                                                self.encoder_version)
        enc = encode(view, st, self.maxima, self._last_time, self.advisors.advise(view))
        mask = action_mask(view, enc, self.maxima)
        self._last_time = view.time
        if not mask[:-1].any():
            return []
        a = self._act(as_version(enc.obs, self.encoder_version), mask)
        if a == self.maxima.n_actions - 1:
            return []
        return placement_of(view, enc, self.maxima, a)


def _most_likely(logits: torch.Tensor, allowed: torch.Tensor,
                 huge_neg: torch.Tensor) -> torch.Tensor:
    """The index of the most likely allowed action, as SB3's
    MaskableCategorical finds its mode: normalised logits, masked to -1e8,
    normalised again, the argmax of their softmax."""
    logits = logits - logits.logsumexp(dim=-1, keepdim=True)
    logits = torch.where(allowed, logits, huge_neg)
    logits = logits - logits.logsumexp(dim=-1, keepdim=True)
    return torch.softmax(logits, dim=-1).argmax(dim=1).reshape(-1)[0]


class _MostLikely(nn.Module):
    """The deterministic decision, observation arrays in, action index out:
    the policy's features, actor latent and action net, then
    :func:`_most_likely`. Its arguments are the observation's arrays in the
    order of ``keys``, then the mask."""

    def __init__(self, policy: Any, keys: tuple[str, ...], n_actions: int,
                 huge_neg: torch.Tensor) -> None:
        super().__init__()
        self.features, self.actor = policy.pi_features_extractor, policy.mlp_extractor
        self.action_net = policy.action_net
        self.keys, self.n_actions, self.huge_neg = keys, n_actions, huge_neg

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        *observed, allowed = arrays
        features = self.features(dict(zip(self.keys, observed)))
        logits = self.action_net(self.actor.forward_actor(features))
        return _most_likely(logits.view(-1, self.n_actions), allowed, self.huge_neg)


def _trace(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """``module`` traced on one decision's inputs: the same operations on
    the same kernels (so the same numbers: fusion on the CPU is off by
    default, and nothing is folded or frozen), run as one graph instead of
    some seventy Python calls into torch, which cost more than the
    arithmetic at these sizes (a decision's network 0.89 -> 0.47 ms here).
    The network takes no branch on its inputs at a batch of one, so the
    trace is the computation for every observation of these shapes. Where
    tracing is not to be had (torch deprecates ``torch.jit.trace``; a
    version without it, or a policy it cannot trace), the module runs as it
    is, eagerly, with the same result."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # what it warns of: a branch on the batch size (always one
            # here), and its own deprecation
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.trace(module.eval(), inputs, check_trace=False)
    except Exception:  # noqa: BLE001  (any failure to trace leaves the eager module)
        return module
