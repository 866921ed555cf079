"""A SASRec-style next-item model: causal self-attention over the user's recent items.

It reads the order of the whole recent history (transitions read one step, co-occurrence
none), which is where the next item is most predictable. Small on purpose (d = 64, two
blocks, the last 50 items) so a tenant's model trains on two CPU cores in about a minute
and answers in about a millisecond; training stops at a time budget, not an epoch count.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from service.training.contract import InteractionLog
from service.training.data import Floats, History, Ints, Ranked, user_runs

PAD = 0  # token 0 pads; catalog index i is token i + 1


class _SelfAttentionNet(nn.Module):
    """Item + position embeddings -> pre-norm transformer blocks with a causal mask."""

    def __init__(self, tokens: int, dim: int, blocks: int, heads: int, max_len: int,
                 dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.max_len = max_len
        self.item = nn.Embedding(tokens, dim, padding_idx=PAD)
        self.position = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item.weight, std=0.05)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden state at every step of left-padded, right-aligned sequences (B, L)."""
        batch, length = sequences.shape
        positions = torch.arange(self.max_len - length, self.max_len)
        x = self.item(sequences) * math.sqrt(self.item.embedding_dim) + self.position(positions)
        x = self.dropout(x)
        # Causal, and never attend to padding, except to itself (a row of only masked keys
        # would be NaN); padded steps are never read.
        blocked = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        blocked = blocked.unsqueeze(0) | (sequences == PAD).unsqueeze(1)
        blocked &= ~torch.eye(length, dtype=torch.bool).unsqueeze(0)
        mask = blocked.repeat_interleave(self.heads, dim=0)
        hidden: torch.Tensor = self.norm(self.encoder(x, mask=mask))
        return hidden


class SequenceModel:
    """SASRec-style next-item prediction over the tenant's whole catalog.

    Each user's time-ordered item sequence (every event: what they went to next, liked
    or not) is cut into windows of `max_len` + 1 items from the end (at most `windows`
    of them); every step predicts the next item. The loss is the full-catalog softmax up
    to `full_softmax_items` items, else a sampled softmax over `negatives` shared uniform
    negatives per batch (accidental hits masked). Output embeddings are the input ones.
    Training stops at `seconds`, after `max_epochs`, or when the loss stops falling.
    Seeded and run with `threads` torch threads, restored afterwards.

    Measured on ml-latest-small (2 cores shared with other jobs, 40 s budget, held-out
    HR@10 on 500 users): one thread 80 ms per batch of 32, two threads 1.7 s (they wait
    for a busy core), hence one; 1,024 sampled negatives matched the full softmax (0.056
    both) at a third of the cost per epoch, 256 lost (0.040); batches of 128 left too few
    steps in the budget (0.036).
    """

    name = "sequence"
    MAX_EPOCHS = 200

    def __init__(self, dim: int = 64, blocks: int = 2, heads: int = 2, max_len: int = 50,
                 dropout: float = 0.2, learning_rate: float = 2e-3, batch_size: int = 32,
                 windows: int = 2, seconds: float = 60.0, max_epochs: int = MAX_EPOCHS,
                 full_softmax_items: int = 5_000, negatives: int = 1024, patience: int = 5,
                 seed: int = 0, threads: int = 1) -> None:
        self.dim = dim
        self.blocks = blocks
        self.heads = heads
        self.max_len = max_len
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.windows = windows
        self.seconds = seconds
        self.max_epochs = max_epochs
        self.full_softmax_items = full_softmax_items
        self.negatives = negatives
        self.patience = patience
        self.seed = seed
        self.threads = threads
        self.losses: list[float] = []  # mean training loss per epoch
        self.warm_started = False  # training continued from another fit's weights
        self.net: _SelfAttentionNet | None = None
        self.n_items = 0

    def _config(self) -> dict[str, Any]:
        return {"dim": self.dim, "blocks": self.blocks, "heads": self.heads,
                "max_len": self.max_len, "dropout": self.dropout}

    def _build(self, n_items: int) -> _SelfAttentionNet:
        self.n_items = n_items
        self.net = _SelfAttentionNet(n_items + 1, self.dim, self.blocks, self.heads,
                                     self.max_len, self.dropout)
        return self.net

    def fit(self, log: InteractionLog, n_items: int,
            progress: Callable[[int, float], None] | None = None,
            start_from: SequenceModel | None = None) -> SequenceModel:
        """Train until `seconds` pass or `max_epochs` end; `progress(epoch, loss)` per epoch.

        `start_from`: a model fitted on part of this log (the same catalog index and
        architecture) whose weights training continues from instead of random ones; a
        model of another shape is ignored (`_continue_from`)."""
        windows = self._windows(log)
        self.losses = []
        if len(windows) == 0:
            self.net = None
            return self
        started = time.monotonic()
        with self._torch_settings():
            torch.manual_seed(self.seed)
            net = self._build(n_items)
            self.warm_started = self._continue_from(start_from)
            optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
            shuffle = torch.Generator().manual_seed(self.seed)
            data = torch.from_numpy(windows)
            net.train()
            for epoch in range(self.max_epochs):
                total, batches = 0.0, 0
                shuffled = torch.randperm(len(data), generator=shuffle)
                for start in range(0, len(data), self.batch_size):
                    batch = shuffled[start:start + self.batch_size]
                    chunk = data[batch]
                    loss = self._loss(net, chunk[:, :-1], chunk[:, 1:], shuffle)
                    optimiser.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    optimiser.step()
                    total, batches = total + float(loss.item()), batches + 1
                    if time.monotonic() - started > self.seconds:
                        break
                self.losses.append(total / max(batches, 1))
                if progress is not None:
                    progress(epoch, self.losses[-1])
                if time.monotonic() - started > self.seconds or self._settled():
                    break
            net.eval()
        return self

    def _continue_from(self, other: SequenceModel | None) -> bool:
        """Load `other`'s weights into the new net when every tensor has the same shape
        (the same catalog index size and the same layers)."""
        if other is None or other.net is None or self.net is None:
            return False
        mine = self.net.state_dict()
        theirs = other.net.state_dict()
        if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
            return False
        self.net.load_state_dict(theirs)
        return True

    def _settled(self) -> bool:
        """The training loss stopped falling: `patience` epochs without a 1 % gain."""
        if len(self.losses) <= self.patience:
            return False
        return min(self.losses[-self.patience:]) > 0.99 * min(self.losses[:-self.patience])

    def _loss(self, net: _SelfAttentionNet, inputs: torch.Tensor, targets: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
        real = targets != PAD
        hidden = net(inputs)[real]
        wanted = targets[real]
        table = net.item.weight
        if self.n_items <= self.full_softmax_items:
            logits = hidden @ table[1:].T
            return nn.functional.cross_entropy(logits, wanted - 1)
        negatives = torch.randint(1, self.n_items + 1, (self.negatives,), generator=generator)
        positive = (hidden * table[wanted]).sum(-1, keepdim=True)
        negative = hidden @ table[negatives].T
        negative = negative.masked_fill(negatives.unsqueeze(0) == wanted.unsqueeze(1),
                                        float("-inf"))
        logits = torch.cat([positive, negative], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))

    def _windows(self, log: InteractionLog) -> Ints:
        order, starts = user_runs(log)
        tokens = log.items[order].astype(np.int64) + 1
        width = self.max_len + 1
        rows: list[Ints] = []
        for u in range(len(starts) - 1):
            sequence = tokens[starts[u]:starts[u + 1]]
            end = len(sequence)
            taken = 0
            while end > 1 and taken < self.windows:
                rows.append(sequence[max(0, end - width):end])
                end -= width - 1
                taken += 1
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        for r, row in enumerate(rows):
            out[r, width - len(row):] = row
        return out

    def _logits(self, history: History) -> torch.Tensor | None:
        """Next-item logits over the catalog (index i = catalog index i), or None."""
        known = history.items[history.items >= 0][-self.max_len:]
        if self.net is None or len(known) == 0:
            return None
        hidden = self.net(torch.from_numpy(known + 1).unsqueeze(0))[0, -1]
        logits: torch.Tensor = self.net.item.weight[1:] @ hidden
        return logits

    def scores(self, history: History) -> Floats | None:
        """Next-item probabilities over the catalog, or None with nothing to go on."""
        with _one_thread(), torch.inference_mode():
            logits = self._logits(history)
            if logits is None:
                return None
            probabilities = torch.softmax(logits.double(), dim=0).numpy()
        return np.asarray(probabilities, dtype=np.float64)

    def recommend(self, history: History, n: int, excluded: Ints) -> Ranked:
        """The n likeliest next items not in `excluded`, scored by their probability.

        Only the top n are read out of the logits (`torch.topk`), and the softmax's
        denominator is one log-sum-exp: no catalog-sized array is built in numpy.
        """
        if n <= 0:
            return Ranked.empty()
        with _one_thread(), torch.inference_mode():
            logits = self._logits(history)
            if logits is None:
                return Ranked.empty()
            total = torch.logsumexp(logits.double(), dim=0)
            if len(excluded):
                logits[torch.from_numpy(excluded)] = float("-inf")
            values, found = torch.topk(logits, min(n, len(logits)))
            keep = torch.isfinite(values)
            values, found = values[keep], found[keep]
            probabilities = torch.exp(values.double() - total).numpy()
            items = found.numpy().astype(np.int64)
        order = np.lexsort((items, -probabilities))  # ties by index, as `top_scored` does
        items, probabilities = items[order], probabilities[order]
        positive = probabilities > 0
        items, probabilities = items[positive], probabilities[positive]
        return Ranked(items, np.asarray(probabilities, dtype=np.float64),
                      np.full(len(items), -1, dtype=np.int64))

    @contextmanager
    def _torch_settings(self) -> Iterator[None]:
        threads = torch.get_num_threads()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.set_num_threads(self.threads)
                yield
        finally:
            torch.set_num_threads(threads)

    def save(self, directory: Path) -> None:
        (directory / "sequence.json").write_text(json.dumps(
            {**self._config(), "n_items": self.n_items, "trained": self.net is not None,
             "losses": self.losses}))
        if self.net is not None:
            torch.save(self.net.state_dict(), directory / "sequence.pt")

    @classmethod
    def load(cls, directory: Path) -> SequenceModel:
        config = json.loads((directory / "sequence.json").read_text())
        model = cls(dim=config["dim"], blocks=config["blocks"], heads=config["heads"],
                    max_len=config["max_len"], dropout=config["dropout"])
        model.losses = list(config.get("losses", []))
        model.n_items = int(config["n_items"])
        if config["trained"]:
            net = model._build(model.n_items)
            net.load_state_dict(torch.load(directory / "sequence.pt", weights_only=True))
            net.eval()
        return model


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run a request's inference on one torch thread, then restore the thread count.

    One request's forward pass is a few small matrices: a second OpenMP thread only
    waits for the other core (measured at 100k items on 2 busy cores: 5-8 ms on one
    thread, 50-170 ms on two). In torch's OpenMP build the count is per OS thread once
    a thread has used torch, so this leaves other threads (the embedder's) alone; the
    process-wide default that threads not yet started would read is restored on exit.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
