"""What RecPO needs from several processes: one global batch split across them, summed exactly.

Each process holds a contiguous slice of the global batch. Losses are normalised by *global* counts
(tokens, paths) and gradients are summed, so N processes give the same loss and update as one
process on the whole batch. The rec head's in-batch softmax sees every process's target items
(gathered with gradient), as the paper's multi-GPU training does. Without a process group every
operation is the identity; with one (even of a single process, as under ``torchrun --nproc_per_node 1``)
every operation goes through it, on the device the tensors live on (nccl: the GPU, gloo: the CPU).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


class Collective:
    """The process group seen by the trainer; a single process when torch.distributed is not set up."""

    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if self.active else 1
        self.rank = dist.get_rank() if self.active else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, size: int) -> slice:
        """This process's contiguous slice of a global batch of ``size`` rows (size divisible by N)."""
        if size % self.world_size:
            raise ValueError(f"a global batch of {size} does not split over {self.world_size} processes")
        per = size // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's rows in rank order; gradients flow back to their owners."""
        if not self.active:
            return tensor
        return torch.cat(dist_nn.all_gather(tensor), dim=0)

    def gather_values(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows in rank order, without gradient (rewards, lengths, ids)."""
        return self.gather(tensor.detach().contiguous())

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over processes (no gradient): global counts and reported losses."""
        if not self.active:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum each gradient over processes (losses are already divided by global counts)."""
        if not self.active:
            return
        parameters = list(parameters)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([grad.reshape(-1) for grad in grads])  # one collective, not one per tensor
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for parameter, chunk in zip(parameters, flat.split([g.numel() for g in grads]), strict=True):
            parameter.grad = chunk.view_as(parameter).clone()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()
