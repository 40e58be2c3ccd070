"""Categorical forward processes: D3PM (Austin et al. 2021) and continuous-time masked diffusion.

States are integer tokens. A process over a vocabulary of ``K`` data tokens has
``num_states`` states ``S``: ``K``, or ``K + 1`` when a mask (absorbing) state exists, whose id
is ``K``. Probabilities over states are the last axis of ``[B, L, S]`` arrays.

* :class:`D3PM`: ``T`` discrete steps with one-step matrices ``Q_k`` ``[S, S]`` in the
  row-vector convention: ``q(x_k | x_{k-1}) = onehot(x_{k-1}) @ Q_k`` and
  ``q(x_k | x_0) = onehot(x_0) @ Q_1 @ ... @ Q_k = onehot(x_0) @ q_bar(k)``. Built by
  :meth:`D3PM.uniform`, :meth:`D3PM.absorbing` and :meth:`D3PM.gaussian`. Times are step
  indices ``0..T`` (``0`` is the data).
* :class:`Masked`: continuous-time masked (absorbing) diffusion (MDLM, Sahoo et al. 2024; MD4,
  Shi et al. 2024): each token is independently replaced by the mask with probability
  ``1 - alpha(t)``, ``alpha(t) = 1 - t``, ``t`` in ``[0, 1]``.

Both give ``marginal_probs(x0, t)`` (``q(x_t | x0)``) and ``posterior_probs(x_t, x0_probs, t,
s)``: ``q(x_s | x_t, x0)`` averaged over ``x0 ~ x0_probs``. With the exact denoiser
``x0_probs = p(x0_i | x_t)`` this is the exact reverse marginal ``q(x_s_i | x_t)`` of each token.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffax._pytree import concrete_value, pytree_dataclass, static_field

__all__ = ["D3PM", "Masked", "DiscreteProcess", "check_tokens", "check_probs"]


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def check_tokens(x: Any, *, name: str, num_states: int, where: str = "",
                 ndim: int | None = 2) -> jax.Array:
    """``x`` as int32 after checking it holds integer tokens in ``[0, num_states)``.

    Raises:
      TypeError: ``x`` is not an integer array (naming ``name``).
      ValueError: wrong rank, or (when concrete) a token out of range.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
    if not (jnp.issubdtype(dtype, jnp.integer)) or jnp.issubdtype(dtype, jnp.bool_):
        raise TypeError(f"{_where(where)}`{name}` must hold integer tokens, got dtype {dtype}.")
    if ndim is not None and jnp.ndim(x) != ndim:
        raise ValueError(f"{_where(where)}`{name}` must have shape [B, L] of tokens, got shape "
                         f"{tuple(jnp.shape(x))}.")
    v = concrete_value(x)
    if v is not None and v.size and (v.min() < 0 or v.max() >= num_states):
        bad = v[(v < 0) | (v >= num_states)]
        raise ValueError(f"{_where(where)}`{name}` has tokens outside [0, {num_states}): "
                         f"{bad.size} of them, e.g. {int(bad.flat[0])}.")
    return jnp.asarray(x, jnp.int32)


def check_probs(p: Any, *, name: str, shape: tuple[int, ...], where: str = "") -> jax.Array:
    """``p`` as a float array after checking its shape ``shape`` (``None`` entries free)."""
    dtype = getattr(p, "dtype", None)
    if dtype is None:
        p = np.asarray(p)
        dtype = p.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{_where(where)}`{name}` must be a float array of probabilities, got "
                        f"dtype {dtype}.")
    got = tuple(jnp.shape(p))
    if len(got) != len(shape) or any(
            s is not None and g != s for g, s in zip(got, shape, strict=True)):
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{_where(where)}`{name}` must have shape {want}, got {list(got)}.")
    return jnp.asarray(p)


def _batch_times(t: Any, batch: int, *, name: str, where: str) -> jax.Array:
    t = jnp.asarray(t)
    if t.ndim == 0:
        return jnp.broadcast_to(t, (batch,))
    if t.shape != (batch,):
        raise ValueError(f"{_where(where)}`{name}` must be a scalar or have shape [B] = "
                         f"[{batch}], got shape {tuple(t.shape)}.")
    return t


class DiscreteProcess:
    """Base of the categorical processes (for ``isinstance`` checks only)."""

    vocab_size: int

    @property
    def num_states(self) -> int:
        raise NotImplementedError

    @property
    def mask_id(self) -> int | None:
        """The mask state's id (``vocab_size``), or ``None`` without one."""
        return self.vocab_size if self.num_states > self.vocab_size else None

    def _pad(self, x0_probs: jax.Array) -> jax.Array:
        """``[..., K]`` probabilities over data tokens -> ``[..., S]`` (zero for the mask)."""
        extra = self.num_states - self.vocab_size
        if extra == 0:
            return x0_probs
        return jnp.concatenate([x0_probs, jnp.zeros((*x0_probs.shape[:-1], extra),
                                                    x0_probs.dtype)], axis=-1)

    def _check_x0_probs(self, x0_probs: Any, x_t: jax.Array, where: str) -> jax.Array:
        return check_probs(x0_probs, name="x0_probs", where=where,
                           shape=(*x_t.shape, self.vocab_size))


# --------------------------------------------------------------------------------------------
# D3PM


def _uniform_q(beta: np.ndarray, k: int) -> np.ndarray:
    eye = np.eye(k)
    return (1.0 - beta)[:, None, None] * eye + beta[:, None, None] * np.full((k, k), 1.0 / k)


def _absorbing_q(beta: np.ndarray, k: int) -> np.ndarray:
    s = k + 1
    eye = np.eye(s)
    to_mask = np.zeros((s, s))
    to_mask[:, k] = 1.0
    return (1.0 - beta)[:, None, None] * eye + beta[:, None, None] * to_mask


def _gaussian_q(beta: np.ndarray, k: int) -> np.ndarray:
    """Austin et al.'s discretised Gaussian: ``Q[i, j] ∝ exp(-4 (i-j)^2 / ((K-1)^2 beta))``
    off the diagonal (normalised over offsets ``-(K-1)..K-1``), the diagonal takes the rest."""
    n = np.arange(-(k - 1), k, dtype=np.float64)
    out = np.empty((beta.size, k, k))
    diff = np.arange(k)[:, None] - np.arange(k)[None, :]
    for i, b in enumerate(beta):
        w = np.exp(-4.0 * n ** 2 / ((k - 1) ** 2 * b))
        q = np.exp(-4.0 * diff ** 2 / ((k - 1) ** 2 * b)) / w.sum()
        np.fill_diagonal(q, 0.0)
        np.fill_diagonal(q, 1.0 - q.sum(axis=1))
        out[i] = q
    return out


def _cosine_betas(num_steps: int, s: float = 0.008) -> np.ndarray:
    """Betas of ``alpha_bar(k) = cos((k/T + s) / (1 + s) * pi/2)^2 / alpha_bar(0)``
    (Nichol & Dhariwal's cosine schedule; ``beta_T = 1``, so ``q_bar(T)`` is uniform)."""
    k = np.arange(num_steps + 1, dtype=np.float64)
    f = np.cos((k / num_steps + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    abar[-1] = 0.0
    return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 1.0)


@pytree_dataclass
class D3PM(DiscreteProcess):
    """Discrete-time D3PM with explicit transition matrices (Austin et al. 2021).

    Build with :meth:`uniform`, :meth:`absorbing` or :meth:`gaussian`. ``q_mats[k-1]`` is
    ``Q_k`` and ``q_bars[k]`` is ``Q_1 @ ... @ Q_k`` (``q_bars[0] = I``), both computed once in
    float64 and stored as arrays (leaves of the pytree).

    Attributes:
      q_mats: ``[T, S, S]`` one-step matrices (rows sum to one).
      q_bars: ``[T + 1, S, S]`` cumulative products.
      vocab_size: data tokens ``K``.
      kind: ``"uniform"``, ``"absorbing"`` or ``"gaussian"`` (the prior's form).

    Example:
      >>> from diffax import discrete
      >>> p = discrete.D3PM.absorbing(vocab_size=3, num_steps=4)
      >>> p.num_states, p.num_steps, p.q_bar(4)[0].tolist()
      (4, 4, [0.0, 0.0, 0.0, 1.0])
    """

    q_mats: Any
    q_bars: Any
    vocab_size: int = static_field()
    kind: str = static_field(default="uniform")

    @classmethod
    def _build(cls, q: np.ndarray, vocab_size: int, kind: str) -> D3PM:
        bars = [np.eye(q.shape[-1])]
        for m in q:
            bars.append(bars[-1] @ m)
        dtype = jnp.zeros(()).dtype  # float64 under jax_enable_x64
        return cls(q_mats=jnp.asarray(q, dtype), q_bars=jnp.asarray(np.stack(bars), dtype),
                   vocab_size=int(vocab_size), kind=kind)

    @staticmethod
    def _check_args(where: str, vocab_size: Any, num_steps: Any, minimum: int = 2) -> None:
        for name, v, lo in (("vocab_size", vocab_size, minimum), ("num_steps", num_steps, 1)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise ValueError(f"{where}: `{name}` must be an integer >= {lo}, got {v!r}.")

    @classmethod
    def uniform(cls, *, vocab_size: int, num_steps: int = 1000) -> D3PM:
        """Uniform noise ``Q_k = (1 - beta_k) I + beta_k 11^T / K`` with the cosine schedule
        of ``alpha_bar`` (as the paper), so ``q_bar(k) = alpha_bar_k I + (1 - alpha_bar_k)
        11^T / K`` and ``q_bar(T)`` is uniform.

        Example:
          >>> p = D3PM.uniform(vocab_size=4, num_steps=10)
          >>> p.q_bar(10)[2].round(6).tolist()
          [0.25, 0.25, 0.25, 0.25]
        """
        cls._check_args("D3PM.uniform", vocab_size, num_steps)
        return cls._build(_uniform_q(_cosine_betas(num_steps), vocab_size), vocab_size,
                          "uniform")

    @classmethod
    def absorbing(cls, *, vocab_size: int, num_steps: int = 1000) -> D3PM:
        """Absorbing (mask) noise ``Q_k = (1 - beta_k) I + beta_k 1 e_mask^T`` with the
        paper's ``beta_k = 1 / (T - k + 1)``, i.e. ``alpha_bar_k = 1 - k / T``; mask id ``K``.

        Example:
          >>> p = D3PM.absorbing(vocab_size=2, num_steps=4)
          >>> p.q_bar(1)[0].tolist()
          [0.75, 0.0, 0.25]
        """
        cls._check_args("D3PM.absorbing", vocab_size, num_steps, minimum=1)
        beta = 1.0 / (num_steps - np.arange(1, num_steps + 1) + 1.0)
        return cls._build(_absorbing_q(beta, vocab_size), vocab_size, "absorbing")

    @classmethod
    def gaussian(cls, *, vocab_size: int, num_steps: int = 1000, beta_start: float = 0.02,
                 beta_end: float = 1.0) -> D3PM:
        """Discretised Gaussian noise for ordinal tokens (pixel levels), with ``beta`` linear
        from ``beta_start`` to ``beta_end`` (Austin et al.'s image setting). The matrices are
        symmetric and doubly stochastic, so the stationary distribution is uniform.

        Example:
          >>> p = D3PM.gaussian(vocab_size=5, num_steps=100)
          >>> bool(abs(p.q_bar(100) - 0.2).max() < 1e-6)
          True
        """
        cls._check_args("D3PM.gaussian", vocab_size, num_steps)
        if not 0 < beta_start <= beta_end:
            raise ValueError(f"D3PM.gaussian: need 0 < beta_start <= beta_end, got "
                             f"beta_start={beta_start!r}, beta_end={beta_end!r}.")
        beta = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
        return cls._build(_gaussian_q(beta, vocab_size), vocab_size, "gaussian")

    @property
    def num_steps(self) -> int:
        """``T``."""
        return int(self.q_mats.shape[0])

    @property
    def num_states(self) -> int:
        """``S``: ``K``, or ``K + 1`` for :meth:`absorbing`."""
        return int(self.q_mats.shape[-1])

    t_min = 0
    t_max = property(lambda self: self.num_steps)

    def network_time(self, t: Any) -> jax.Array:
        """The network's time input ``t / T`` in ``[0, 1]``."""
        return jnp.asarray(t, self.q_mats.dtype) / self.num_steps

    def q_matrix(self, k: Any) -> jax.Array:
        """``Q_k`` ``[S, S]`` for ``k`` in ``1..T``."""
        return self.q_mats[jnp.asarray(k) - 1]

    def q_bar(self, k: Any) -> jax.Array:
        """``Q_1 @ ... @ Q_k`` ``[S, S]`` for ``k`` in ``0..T`` (``q_bar(0) = I``)."""
        return self.q_bars[jnp.asarray(k)]

    def transition(self, s: Any, t: Any) -> jax.Array:
        """``Q_{s+1} @ ... @ Q_t`` ``[S, S]``: ``q(x_t | x_s)`` by rows (``s <= t``, traced
        ints allowed)."""
        eye = jnp.eye(self.num_states, dtype=self.q_mats.dtype)
        return jax.lax.fori_loop(jnp.asarray(s, jnp.int32), jnp.asarray(t, jnp.int32),
                                 lambda k, m: m @ self.q_mats[k], eye)

    def prior_probs(self) -> jax.Array:
        """The stationary distribution ``p(x_T)`` ``[S]``: uniform, or all mass on the mask."""
        s = self.num_states
        if self.kind == "absorbing":
            return jnp.zeros((s,), self.q_mats.dtype).at[s - 1].set(1.0)
        return jnp.full((s,), 1.0 / s, self.q_mats.dtype)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Tokens ``[*shape]`` from :meth:`prior_probs`."""
        if self.kind == "absorbing":
            return jnp.full(shape, self.num_states - 1, jnp.int32)
        return jax.random.randint(key, shape, 0, self.num_states, jnp.int32)

    def _steps(self, t: Any, batch: int, name: str, where: str, low: int) -> jax.Array:
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise TypeError(f"{where}: `{name}` must be an integer step index for D3PM, got "
                            f"dtype {t.dtype}.")
        v = concrete_value(t)
        if v is not None and v.size and (v.min() < low or v.max() > self.num_steps):
            raise ValueError(f"{where}: `{name}` must lie in {low}..{self.num_steps}, got "
                             f"{v.min()}..{v.max()}.")
        return _batch_times(t, batch, name=name, where=where).astype(jnp.int32)

    def marginal_probs(self, x0: Any, t: Any) -> jax.Array:
        """``q(x_t | x0)`` ``[B, L, S]`` for tokens ``x0`` ``[B, L]`` and steps ``t`` (scalar
        or ``[B]``, in ``0..T``).

        Example:
          >>> import jax.numpy as jnp
          >>> p = D3PM.uniform(vocab_size=3, num_steps=5)
          >>> p.marginal_probs(jnp.zeros((2, 4), jnp.int32), 5).shape
          (2, 4, 3)
        """
        where = "D3PM.marginal_probs"
        x0 = check_tokens(x0, name="x0", num_states=self.vocab_size, where=where)
        t = self._steps(t, x0.shape[0], "t", where, 0)
        return jax.vmap(lambda x, k: self.q_bars[k][x])(x0, t)

    def posterior_probs(self, x_t: Any, x0_probs: Any, t: Any, s: Any = None) -> jax.Array:
        """``q(x_s | x_t, x0)`` averaged over ``x0 ~ x0_probs``, ``[B, L, S]``.

        Per token, ``sum_j x0_probs[j] Q_{s->t}[x_s, x_t] q_bar_s[j, x_s] / q_bar_t[j, x_t]``;
        values ``j`` that cannot produce ``x_t`` (``q_bar_t[j, x_t] = 0``) get weight zero and
        the result is renormalised (if no weight is left, ``x_s = x_t``).

        Args:
          x_t: ``[B, L]`` tokens at step ``t``.
          x0_probs: ``[B, L, K]`` probabilities of the data tokens.
          t: steps ``[B]`` or scalar, in ``1..T``.
          s: earlier steps ``0 <= s < t`` (default ``t - 1``).

        Example:
          >>> import jax, jax.numpy as jnp
          >>> p = D3PM.absorbing(vocab_size=2, num_steps=4)
          >>> x_t = jnp.array([[2, 0]])
          >>> p.posterior_probs(x_t, jax.nn.one_hot(jnp.array([[1, 0]]), 2), 4).tolist()
          [[[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]]]
        """
        where = "D3PM.posterior_probs"
        x_t = check_tokens(x_t, name="x_t", num_states=self.num_states, where=where)
        x0_probs = self._pad(self._check_x0_probs(x0_probs, x_t, where)).astype(
            self.q_mats.dtype)
        t = self._steps(t, x_t.shape[0], "t", where, 1)
        s = t - 1 if s is None else self._steps(s, x_t.shape[0], "s", where, 0)
        v_s, v_t = concrete_value(s), concrete_value(t)
        if v_s is not None and v_t is not None and np.any(v_s >= v_t):
            raise ValueError(f"{where}: `s` must be below `t`, got s={v_s}, t={v_t}.")

        def one(xt, p0, tk, sk):
            q_st = self.transition(sk, tk)           # [S, S]
            like = q_st[:, xt].T                      # [L, S]: q(x_t | x_s = .)
            den = self.q_bars[tk][:, xt].T            # [L, S_j]: q(x_t | x0 = j)
            w = jnp.where(den > 0, p0 / jnp.where(den > 0, den, 1.0), 0.0)
            post = like * (w @ self.q_bars[sk])
            total = post.sum(-1, keepdims=True)
            stay = jax.nn.one_hot(xt, self.num_states, dtype=post.dtype)
            return jnp.where(total > 0, post / jnp.where(total > 0, total, 1.0), stay)

        return jax.vmap(one)(x_t, x0_probs, t, s)


# --------------------------------------------------------------------------------------------
# continuous-time masked diffusion


@pytree_dataclass
class Masked(DiscreteProcess):
    """Continuous-time masked diffusion (MDLM / MD4) with ``alpha(t) = 1 - t``.

    ``q(x_t | x0)``: each token stays with probability ``alpha(t)`` and becomes the mask
    (id ``K``) otherwise. The reverse step from ``t`` to ``s < t`` unmasks a masked token with
    probability ``(alpha(s) - alpha(t)) / (1 - alpha(t))``, to ``j ~ x0_probs``.

    Attributes:
      vocab_size: data tokens ``K``; the mask is ``K`` and ``num_states = K + 1``.

    Example:
      >>> from diffax import discrete
      >>> p = discrete.Masked(vocab_size=27)
      >>> p.num_states, p.mask_id
      (28, 27)
    """

    vocab_size: int = static_field()

    t_min = 0.0
    t_max = 1.0

    def __post_init__(self):
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"Masked: `vocab_size` must be an integer >= 1, got {v!r}.")

    @property
    def num_states(self) -> int:
        """``K + 1``."""
        return int(self.vocab_size) + 1

    def alpha(self, t: Any) -> jax.Array:
        """Probability that a token is still unmasked at time ``t``."""
        return 1.0 - jnp.asarray(t)

    def alpha_rate(self, t: Any) -> jax.Array:
        """``-alpha'(t) / (1 - alpha(t))``: the unmasking rate's weight (``1 / t``)."""
        return 1.0 / jnp.asarray(t)

    def network_time(self, t: Any) -> jax.Array:
        """The network's time input (``t`` itself)."""
        return jnp.asarray(t)

    def prior_probs(self) -> jax.Array:
        """All mass on the mask ``[S]``."""
        return jnp.zeros((self.num_states,)).at[self.vocab_size].set(1.0)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """All-mask tokens ``[*shape]``."""
        del key
        return jnp.full(shape, self.vocab_size, jnp.int32)

    def _times(self, t: Any, batch: int, name: str, where: str) -> jax.Array:
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.floating):
            raise TypeError(f"{where}: `{name}` must be a float time in [0, 1] for Masked, got "
                            f"dtype {t.dtype}.")
        v = concrete_value(t)
        if v is not None and v.size and (not np.all(np.isfinite(v)) or v.min() < 0
                                         or v.max() > 1):
            raise ValueError(f"{where}: `{name}` must lie in [0, 1], got {v.min()}..{v.max()}.")
        return _batch_times(t, batch, name=name, where=where)

    def marginal_probs(self, x0: Any, t: Any) -> jax.Array:
        """``q(x_t | x0)`` ``[B, L, K + 1]``.

        Example:
          >>> import jax.numpy as jnp
          >>> Masked(vocab_size=2).marginal_probs(jnp.array([[1]]), 0.25).tolist()
          [[[0.0, 0.75, 0.25]]]
        """
        where = "Masked.marginal_probs"
        x0 = check_tokens(x0, name="x0", num_states=self.vocab_size, where=where)
        t = self._times(t, x0.shape[0], "t", where)
        a = self.alpha(t)[:, None, None]
        onehot = jax.nn.one_hot(x0, self.num_states, dtype=a.dtype)
        mask = jax.nn.one_hot(jnp.full_like(x0, self.vocab_size), self.num_states,
                              dtype=a.dtype)
        return a * onehot + (1.0 - a) * mask

    def posterior_probs(self, x_t: Any, x0_probs: Any, t: Any, s: Any) -> jax.Array:
        """``q(x_s | x_t, x0)`` averaged over ``x0 ~ x0_probs``, ``[B, L, K + 1]``.

        An unmasked token stays; a masked one stays masked with probability
        ``(1 - alpha(s)) / (1 - alpha(t))`` and becomes ``j`` with probability
        ``(alpha(s) - alpha(t)) / (1 - alpha(t)) * x0_probs[j]``.

        Example:
          >>> import jax.numpy as jnp
          >>> p = Masked(vocab_size=2)
          >>> p.posterior_probs(jnp.array([[2, 0]]), jnp.array([[[0.5, 0.5], [0.9, 0.1]]]),
          ...                   0.5, 0.25).tolist()
          [[[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]]]
        """
        where = "Masked.posterior_probs"
        x_t = check_tokens(x_t, name="x_t", num_states=self.num_states, where=where)
        x0_probs = self._check_x0_probs(x0_probs, x_t, where)
        t = self._times(t, x_t.shape[0], "t", where)
        s = self._times(s, x_t.shape[0], "s", where)
        v_s, v_t = concrete_value(s), concrete_value(t)
        if v_s is not None and v_t is not None and np.any(v_s >= v_t):
            raise ValueError(f"{where}: `s` must be below `t`, got s={v_s}, t={v_t}.")
        a_t, a_s = self.alpha(t)[:, None, None], self.alpha(s)[:, None, None]
        dtype = jnp.result_type(x0_probs.dtype, a_t.dtype)
        unmask = ((a_s - a_t) / (1.0 - a_t)).astype(dtype)
        probs = self._pad(unmask * x0_probs.astype(dtype))
        probs = probs.at[..., self.vocab_size].set(((1.0 - a_s) / (1.0 - a_t))[..., 0]
                                                  .astype(dtype))
        masked = (x_t == self.vocab_size)[..., None]
        return jnp.where(masked, probs, jax.nn.one_hot(x_t, self.num_states, dtype=dtype))

