"""Linear decoders from fMRI voxels to feature targets.

``RidgeGCV``
    Whole-brain ridge with an intercept; alpha chosen by generalised cross-validation (GCV) from one
    eigendecomposition of the standardised Gram matrix. Built for the paper's size
    (X 14,400 x 6,662, Y 14,400 x 25,664, float32): Y is never copied, statistics and products are
    computed over row chunks, and the coefficients overwrite the projected targets in place.

``SelectiveRidge``
    The fastl2lir algorithm (KamitaniLab): per output unit, keep the ``n_feat`` voxels with the largest
    |correlation| to it and solve a ridge on those, the bias regularised too. Same results as
    ``fastl2lir.FastL2LiR().fit(X, Y, alpha, n_feat)``, computed from one shared Gram matrix and
    batched Cholesky solves (X^T Y over the distinct rows of Y when they repeat per stimulus).

Both take numpy arrays or torch tensors of shape (n_samples, n_voxels) and (n_samples, n_outputs),
compute in ``dtype`` on ``device`` ("cpu" or "cuda[:k]") and expose numpy attributes. On CUDA all
the work is torch. On CPU the data stay in torch tensors but the BLAS-3 products, the
eigendecomposition and the elementwise passes run through numpy/scipy (OpenBLAS) on the same
memory, which is faster there than torch's CPU kernels (torch has no syrk; scipy's ?syevd beats
torch.linalg.eigh); ``benchmarks/test_bench_ridge.py`` measures both solvers against their references.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Any, Iterator

import numpy as np
import torch

from bench.errors import BenchError

__all__ = ["RidgeGCV", "SelectiveRidge"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Column chunks of (V, m) matrices are sized to about this many bytes: small enough to keep peak
# memory flat, large enough for efficient matrix products.
_CHUNK_BYTES = 64 * 2**20

# Column block width of the Gram matrix on CUDA: only upper-triangle blocks are computed, which
# saves ~40% of the flops of X^T X (gemm does not exploit symmetry). Also the block of the mirror copy.
_GRAM_BLOCK = 1024

# SelectiveRidge: bytes of float64 selection statistics held per block of outputs, and the largest (V, V) Gram
# computed once for all blocks.
_SELECT_BYTES = 256 * 2**20
_GRAM_ALL_BYTES = 2 * 2**30

# fastl2lir treats voxels with np.var(X, axis=0) below this as constant (correlation 0).
_FASTL2LIR_VAR_FLOOR = 1e-8


# ----------------------------------------------------------------------------------------------
# Validation helpers


def _as_tensor(name: str, a: Any) -> torch.Tensor:
    """A CPU or device tensor sharing memory with ``a`` when ``a`` is a float numpy array/tensor.

    Integer or list input is converted to float32 (a copy); float32/float64 input is never copied.
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype not in (np.float32, np.float64):
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
                raise BenchError(
                    f"{name} has shape {arr.shape} and dtype {arr.dtype}; expected a float array"
                )
            arr = arr.astype(np.float32)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        with warnings.catch_warnings():
            # Read-only arrays (e.g. memory maps) are only read here.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(arr)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def _check_2d(name: str, t: torch.Tensor, expected: str) -> None:
    if t.ndim != 2:
        raise BenchError(f"{name} has shape {tuple(t.shape)} but expected a 2-D array {expected}")


def _resolve(device: Any, dtype: Any) -> tuple[torch.device, torch.dtype]:
    if dtype not in _DTYPES:
        raise BenchError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BenchError(f"device {device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {device!r} requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise BenchError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev, _DTYPES[dtype]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BenchError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _row_chunks(n: int, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, n, rows):
        yield r0, min(n, r0 + rows)


def _col_chunk(n_rows: int, itemsize: int = 8) -> int:
    return max(1, _CHUNK_BYTES // max(1, n_rows * itemsize))


def _check_xy(X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = _as_tensor("X", X)
    _check_2d("X", Xt, "(n_samples, n_voxels)")
    Yt = _as_tensor("Y", Y)
    _check_2d("Y", Yt, f"({Xt.shape[0]}, n_outputs)")
    if Yt.shape[0] != Xt.shape[0]:
        raise BenchError(
            f"Y has shape {tuple(Yt.shape)} but expected ({Xt.shape[0]}, n_outputs) to match X's rows"
        )
    if Xt.shape[0] < 2 or Xt.shape[1] < 1 or Yt.shape[1] < 1:
        raise BenchError(
            f"X has shape {tuple(Xt.shape)} and Y {tuple(Yt.shape)} but expected at least 2 rows "
            "and 1 column each"
        )
    return Xt, Yt


class _Stages:
    """Wall seconds per fit stage, accumulated by name (the device is synchronised first)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now


# ----------------------------------------------------------------------------------------------
# Shared numerical kernels


_NP = {torch.float32: np.float32, torch.float64: np.float64}


def _on_cpu(A: torch.Tensor, device: torch.device) -> bool:
    """Whether A's rows can be processed with numpy (A and the device on CPU)."""
    return device.type == "cpu" and A.device.type == "cpu"


def _block(
    A: torch.Tensor,
    r0: int,
    r1: int,
    device: torch.device,
    dtype: torch.dtype,
    shift: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows r0:r1 of A as (A - shift) * scale in ``dtype`` on ``device``; shift and scale are (p,)
    tensors of ``dtype`` on ``device`` or None. Without shift the result may be a view of A (read it
    only)."""
    if _on_cpu(A, device):
        a = A[r0:r1].numpy()
        if shift is None:
            return torch.from_numpy(a.astype(_NP[dtype], copy=False))
        out = np.subtract(a, shift.numpy(), dtype=_NP[dtype])
        if scale is not None:
            np.multiply(out, scale.numpy(), out=out)
        return torch.from_numpy(out)
    blk = A[r0:r1].to(device=device, dtype=dtype)
    if shift is None:
        return blk
    blk = blk - shift
    if scale is not None:
        blk.mul_(scale)
    return blk


def _col_sum64(B: torch.Tensor) -> torch.Tensor:
    """Column sums of B (r, p) as float64 (p,)."""
    if B.device.type == "cpu":
        return torch.from_numpy(B.numpy().sum(0, dtype=np.float64))
    return B.sum(0, dtype=torch.float64)


def _sum_sq64(B: torch.Tensor) -> torch.Tensor:
    """Column sums of squares of B (r, p) as float64 (p,)."""
    if B.device.type == "cpu":
        b = B.numpy()
        return torch.from_numpy(np.einsum("ij,ij->j", b, b, dtype=np.float64))
    return B.double().square().sum(0)


def _check_finite(name: str, A: torch.Tensor, *stats: torch.Tensor) -> None:
    if not all(bool(torch.isfinite(t).all()) for t in stats):
        raise BenchError(f"{name} has shape {tuple(A.shape)} and contains NaN or inf; expected finite values")


def _column_stats(name: str, A: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and centred sums of squares of A (n, p), both float64 (p,) on ``device``.

    Row blocks are centred on their own mean in float64 and merged with Chan's update, which avoids
    the cancellation of sum(x^2) - n mean^2 and needs only a small temporary block.
    """
    n, p = A.shape
    rows = max(1, min(n, 2**22 // max(p, 1)))
    mean = torch.zeros(p, dtype=torch.float64, device=device)
    m2 = torch.zeros(p, dtype=torch.float64, device=device)
    count = 0
    for r0, r1 in _row_chunks(n, rows):
        nb = r1 - r0
        if _on_cpu(A, device):
            a = A[r0:r1].numpy()
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf are reported below
                mb_np = a.mean(0, dtype=np.float64)
                d = np.subtract(a, mb_np, dtype=np.float64)
                mb, m2b = torch.from_numpy(mb_np), torch.from_numpy(np.einsum("ij,ij->j", d, d))
        else:
            blk = A[r0:r1].to(device=device, dtype=torch.float64)
            mb = blk.mean(0)
            m2b = (blk - mb).square_().sum(0)
        delta = mb - mean
        tot = count + nb
        mean += delta * (nb / tot)
        m2 += m2b + delta.square() * (count * nb / tot)
        count = tot
    _check_finite(name, A, mean, m2)
    return mean, m2


def _column_mean(name: str, A: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Column means of A (n, p) as float64 (p,), accumulated in float64 over row blocks."""
    n, p = A.shape
    rows = max(1, min(n, 2**22 // max(p, 1)))
    total = torch.zeros(p, dtype=torch.float64, device=device)
    for r0, r1 in _row_chunks(n, rows):
        if _on_cpu(A, device):
            total += torch.from_numpy(A[r0:r1].numpy().sum(0, dtype=np.float64))
        else:
            total += A[r0:r1].to(device=device, dtype=torch.float64).sum(0)
    _check_finite(name, A, total)
    return total / n


def _repeated_rows(A: torch.Tensor, max_share: float = 0.75) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Groups of exactly equal rows of A (n, p): (first (g,), group (n,)) int64 on A's device, ``first[u]`` the
    first row of group u and ``group[i]`` row i's group; None when there are more than ``max_share * n`` groups.

    Decoding targets repeat per stimulus (Brain2Sound: 3,600 windows x 4 presentations), and X^T Y then equals
    S^T Y_u with S the per-stimulus sums of X's rows: fewer flops by the repetition factor. Candidate groups come
    from up to 16 fixed columns; every row is then compared exactly with its group's first row, so rows that
    agree only on those columns end the grouping (None), never merge."""
    n, p = A.shape
    cols = torch.linspace(0, p - 1, min(p, 16), device=A.device).round().long().unique()
    _, group = torch.unique(A[:, cols], dim=0, return_inverse=True)
    n_groups = int(group.max()) + 1
    if n_groups > max_share * n:
        return None
    order = torch.arange(n, device=A.device)
    first = torch.full((n_groups,), n, dtype=torch.int64, device=A.device).scatter_reduce_(0, group, order, "amin")
    rows = max(1, 2**24 // max(p, 1))
    for r0, r1 in _row_chunks(n, rows):
        if not bool((A[r0:r1] == A[first[group[r0:r1]]]).all()):
            return None
    return first, group


# BLAS-3 on CPU: OpenBLAS through scipy's BLAS wrappers on torch's memory (see the module docstring);
# Fortran views of the C-ordered tensors let BLAS work in place, without copies.


def _fortran(M: np.ndarray) -> tuple[np.ndarray, int]:
    """(array, trans) such that op(array) == M with array Fortran-contiguous, copying only if needed."""
    if M.flags.f_contiguous:
        return M, 0
    if M.flags.c_contiguous:
        return M.T, 1
    return np.asfortranarray(M), 0


def _addmm_(C: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> None:
    """C += A @ B in place; C (p, q) contiguous, A (p, r), B (r, q) of C's dtype."""
    if C.device.type != "cpu":
        C.addmm_(A, B)
        return
    from scipy.linalg.blas import get_blas_funcs

    Cn = C.numpy()
    gemm = get_blas_funcs("gemm", (Cn,))
    # Column-major BLAS sees C as C^T = B^T A^T.
    a, ta = _fortran(B.numpy().T)
    b, tb = _fortran(A.numpy().T)
    out = gemm(1.0, a, b, beta=1.0, c=Cn.T, trans_a=ta, trans_b=tb, overwrite_c=1)
    if not np.shares_memory(out, Cn):  # f2py had to copy C: keep the result anyway
        Cn.T[...] = out


def _mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A @ B as a new tensor."""
    if A.device.type != "cpu":
        return A @ B
    return torch.from_numpy(np.matmul(A.numpy(), B.numpy()))


def _gram_upper_(G: torch.Tensor, Xc: torch.Tensor) -> None:
    """G (V, V) contiguous += Xc^T Xc on its upper triangle (at least); Xc is (rows, V) contiguous."""
    if G.device.type == "cpu":
        from scipy.linalg.blas import get_blas_funcs

        Gn = G.numpy()
        syrk = get_blas_funcs("syrk", (Gn,))
        # Column-major BLAS sees G^T, whose lower triangle is G's upper one, and Xc^T.
        out = syrk(1.0, Xc.numpy().T, beta=1.0, c=Gn.T, trans=0, lower=1, overwrite_c=1)
        if not np.shares_memory(out, Gn):
            Gn.T[...] = out
        return
    # torch has no syrk: compute only the column blocks on and above the diagonal.
    V = Xc.shape[1]
    for a in range(0, V, _GRAM_BLOCK):
        b = min(V, a + _GRAM_BLOCK)
        G[a:b, a:].addmm_(Xc[:, a:b].T, Xc[:, a:])


def _mirror_upper_(G: torch.Tensor) -> None:
    """Copy G's upper triangle into its lower one, in place, block by block (no V x V temporary)."""
    V = G.shape[0]
    for a in range(0, V, _GRAM_BLOCK):
        b = min(V, a + _GRAM_BLOCK)
        blk = G[a:b, a:b]
        blk.copy_(torch.triu(blk) + torch.triu(blk, 1).T)
        if b < V:
            G[b:, a:b].copy_(G[a:b, b:].T)


def _few_threads() -> bool:
    """Whether torch's intra-op pool is small enough (< 4 threads) for single-threaded loops to win."""
    return torch.get_num_threads() < 4


@functools.lru_cache(maxsize=1)
def _upper_gather_kernel():
    """numba kernel out[j, p, q] = G[idx[j, q], idx[j, p]] (= G[idx[j, p], idx[j, q]], G symmetric) for q >= p, the
    upper triangle only; None without numba. Compiled once per process (cached on disk where the package folder is
    writable)."""
    try:
        import numba
    except ImportError:
        return None

    def gather_upper(G, idx, out):  # pragma: no cover - compiled
        # Column q of out's upper triangle from the start of row idx[j, q] of the symmetric G: reading rows from
        # their start measured faster than reading their ends (0.57 vs 0.67 ms per 500 x 500 block).
        for j in range(idx.shape[0]):
            ix = idx[j]
            for q in range(ix.shape[0]):
                row = G[ix[q]]
                for p in range(q + 1):
                    out[j, p, q] = row[ix[p]]

    try:
        return numba.njit(nogil=True, cache=True)(gather_upper)
    except RuntimeError:  # no writable cache location (read-only install and home): compile per process
        return numba.njit(nogil=True)(gather_upper)


def _gather_square(G: torch.Tensor, idx: torch.Tensor, buf: np.ndarray | None = None) -> torch.Tensor:
    """(c, k, k) Gram blocks G[idx[j]][:, idx[j]] for each row j of idx (c, k), for ``_cholesky_solve_batch``.

    On a CPU with few threads (the LAPACK loop there) only the upper triangle (C order) is filled: it is all that
    loop's factorisation reads, and with sorted rows of idx it touches about half of each row of G (measured at
    V 6,662, k 500: 0.57 ms per block against 3.2-3.9 ms for numpy's broadcast fancy indexing, which is memory
    bound). Without numba, rows then columns by ``take`` (1.3 ms). Elsewhere all of it, by torch.take
    (multithreaded; the batched torch Cholesky reads the lower triangle). ``buf`` (at least (c, k, k), G's dtype):
    written into and returned instead of a new array, on the CPU path."""
    if G.device.type == "cpu" and _few_threads():
        Gn, In = G.numpy(), idx.numpy()
        shape = (In.shape[0], In.shape[1], In.shape[1])
        out = np.empty(shape, dtype=Gn.dtype) if buf is None else buf[: shape[0]]
        kernel = _upper_gather_kernel()
        if kernel is not None:
            kernel(Gn, np.ascontiguousarray(In), out)
        else:
            for j, ix in enumerate(In):
                out[j] = Gn.take(ix, 0).take(ix, 1)
        return torch.from_numpy(out)
    V = G.shape[0]
    return torch.take(G.view(-1), idx[:, :, None] * V + idx[:, None, :])


def _cholesky_solve_batch(A: torch.Tensor, rhs: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """Solve A[j] x = rhs[j] for symmetric positive definite A (c, k, k); returns (x (c, k, r), index
    of the first non-positive-definite A or None). A is overwritten; on the LAPACK path only its upper triangle
    (C order) is read. On a CPU with few threads one
    LAPACK potrf/potrs per matrix (scipy), which beats torch's batched Cholesky there; with many
    threads torch's batched Cholesky wins and is used."""
    if A.device.type == "cpu" and _few_threads():
        from scipy.linalg.lapack import get_lapack_funcs

        An, Bn = A.numpy(), rhs.numpy()
        potrf, potrs = get_lapack_funcs(("potrf", "potrs"), (An,))
        out = np.empty_like(Bn)
        for j in range(An.shape[0]):
            # A[j]'s C-ordered memory, read as Fortran, is its transpose: no copy; its lower triangle there is the
            # upper triangle in C order, the one _gather_square fills.
            c, info = potrf(An[j].T, lower=1, overwrite_a=1, clean=0)
            if info != 0:
                return torch.from_numpy(out), j
            x, info = potrs(c, Bn[j], lower=1)
            out[j] = x
        return torch.from_numpy(out), None
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info != 0).any()):
        return rhs, int(torch.nonzero(info)[0, 0])
    return torch.cholesky_solve(rhs, L), None


def _eigen_psd(G: torch.Tensor, dev: torch.device, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Of a positive semi-definite Gram / kernel (overwritten): eigenvalues as float64 clipped at 0
    (rounding makes the smallest slightly negative) and eigenvectors in ``dt``, on ``dev``."""
    lam, vecs = _eigh_upper(G)
    return lam.to(device=dev, dtype=torch.float64).clamp_min_(0.0), vecs.to(device=dev, dtype=dt)


def _eigh_upper(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (V,) ascending and eigenvectors (V, V) (columns) of symmetric G from its upper
    triangle; G (contiguous) is overwritten."""
    if G.device.type == "cpu":
        import scipy.linalg

        # G^T is Fortran-contiguous, so LAPACK works in place; its lower triangle is G's upper.
        w, v = scipy.linalg.eigh(G.numpy().T, lower=True, driver="evd", overwrite_a=True, check_finite=False)
        return torch.from_numpy(w), torch.from_numpy(v)
    return torch.linalg.eigh(G, UPLO="U")


# ----------------------------------------------------------------------------------------------
# RidgeGCV


class RidgeGCV:
    """Ridge regression X -> Y with intercept; alpha chosen by generalised cross-validation.

    Parameters
    ----------
    alphas : sequence of float, default (1e0, 1e1, ..., 1e6)
        Candidate penalties (positive). alpha applies to the standardised (or centred) X.
    alpha_per_target : bool
        False: one alpha for all outputs (the mean GCV over outputs is minimised).
        True: each output gets its own alpha.
    standardize_X : bool
        True: X is centred and scaled to unit variance (ddof 0) before the ridge; False: only centred.
        Either way ``coef_`` is in the original units of X. Constant columns get coefficient 0.
    device : str or torch.device
        Where the products run ("cpu", "cuda", "cuda:1"). X and Y stay where they are; row chunks
        are moved to the device.
    dtype : {"float32", "float64"}
        Precision of the Gram matrix, its eigendecomposition and the products. Statistics (means,
        variances, GCV residual sums) are always accumulated in float64.
    chunk_rows : int
        Rows of X and Y processed at once (bounds temporary memory).
    solver : {"auto", "primal", "dual"}
        "primal": eigendecomposition of the (V, V) Gram X^T X; "dual": of the (n, n) kernel X X^T (the
        same ridge, GCV and coefficients; needs a standardised (n, V) copy of X). "auto" takes the
        smaller: dual when n < V, e.g. Brain2Music's 4,800 samples x 54-65k voxels, whose (V, V) Gram
        would need 12-17 GB.

    Attributes (after ``fit``)
    --------------------------
    coef_ : ndarray (V, m), ``dtype``            weights in the original units of X
    solver_ : str                                "primal" or "dual", the one used
    intercept_ : ndarray (m,), ``dtype``
    alpha_ : float, or ndarray (m,) float64 if alpha_per_target
    gcv_scores_ : ndarray (n_alphas,) float64, or (n_alphas, m) if alpha_per_target
    n_features_in_ : int                         V
    timings_ : dict[str, float]                  wall seconds per fit stage

    GCV(alpha) = RSS(alpha) / (n (1 - tr(H)/n)^2) per output, with H the hat matrix of the ridge plus
    intercept (tr H = 1 + sum_k lam_k / (lam_k + alpha)). This is Golub, Heath & Wahba's GCV, not the
    exact leave-one-out error that sklearn's RidgeCV minimises, so the two can pick different alphas.

    Memory at fit: X and Y (only read, never copied), the (V, m) result in ``dtype``, two (V, V)
    matrices and row-chunk temporaries.
    """

    def __init__(
        self,
        alphas: Any = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
        alpha_per_target: bool = False,
        standardize_X: bool = True,
        device: Any = "cpu",
        dtype: str = "float32",
        chunk_rows: int = 4096,
        solver: str = "auto",
    ) -> None:
        self.alphas = alphas
        self.alpha_per_target = alpha_per_target
        self.standardize_X = standardize_X
        self.device = device
        self.dtype = dtype
        self.chunk_rows = chunk_rows
        self.solver = solver

    def _check_alphas(self) -> np.ndarray:
        a = np.asarray(self.alphas, dtype=np.float64)
        if a.ndim != 1 or a.size < 1:
            raise BenchError(f"alphas has shape {a.shape} but expected (n_alphas,) with n_alphas >= 1")
        if not (np.isfinite(a).all() and (a > 0).all()):
            raise BenchError(f"alphas has shape {a.shape} but contains non-positive or non-finite values")
        return a

    def fit(self, X: Any, Y: Any) -> "RidgeGCV":
        """Fit on X (n, V) and Y (n, m), float32 or float64 arrays/tensors. Returns self."""
        alphas = self._check_alphas()
        dev, dt = _resolve(self.device, self.dtype)
        rows = _positive_int("chunk_rows", self.chunk_rows)
        Xt, Yt = _check_xy(X, Y)
        n, V = Xt.shape
        m = Yt.shape[1]
        stage = _Stages(dev)

        x_mean, x_m2 = _column_stats("X", Xt, dev)
        y_mean, y_m2 = _column_stats("Y", Yt, dev)
        stage("stats")
        # Constant columns: scale 0 removes them exactly (coefficient 0) instead of amplifying
        # rounding noise by 1/std.
        x_std = (x_m2 / n).sqrt()
        # A constant column comes out of the centring as rounding noise of order eps * |mean|.
        const = x_std <= 16 * torch.finfo(dt).eps * x_mean.abs()
        const |= x_std == 0
        scale = 1.0 / x_std if self.standardize_X else torch.ones_like(x_std)
        inv_s = torch.where(const, 0.0, scale)
        mu = x_mean.to(dt)
        inv_s_dt = inv_s.to(dt)
        if self.solver not in ("auto", "primal", "dual"):
            raise BenchError(f"solver must be 'auto', 'primal' or 'dual', got {self.solver!r}")
        self.solver_ = "dual" if self.solver == "dual" or (self.solver == "auto" and n < V) else "primal"
        if self.solver_ == "dual":
            return self._fit_dual(Xt, Yt, alphas, x_mean, y_mean, inv_s, stage, dev, dt, rows)

        # Pass 1: Gram of centred X (upper block triangle), then standardise it in place.
        G = torch.zeros(V, V, dtype=dt, device=dev)
        for r0, r1 in _row_chunks(n, rows):
            Xc = _block(Xt, r0, r1, dev, dt, mu)
            _gram_upper_(G, Xc)
            del Xc
        stage("gram")
        G.mul_(inv_s_dt[:, None]).mul_(inv_s_dt[None, :])
        lam, Q = _eigen_psd(G, dev, dt)
        del G
        stage("eigh")

        # Pass 2: B = Z^T Y with Z = Xs Q built chunk by chunk. Y is never centred (no copy): Xs is
        # centred, except for the rounding of the mean in dt, whose leak Z^T 1 ybar^T is removed.
        B = torch.zeros(V, m, dtype=dt, device=dev)
        z_sum = torch.zeros(V, dtype=torch.float64, device=dev)
        for r0, r1 in _row_chunks(n, rows):
            Z = _mm(_block(Xt, r0, r1, dev, dt, mu, inv_s_dt), Q)
            z_sum += _col_sum64(Z)
            stage("z")
            _addmm_(B, Z.T, _block(Yt, r0, r1, dev, dt))
            del Z
            stage("zty")

        # One pass over B's column chunks: remove the leak, then the GCV terms for every alpha,
        #   RSS = ||y - ybar||^2 - sum_k (2 d_k - d_k^2 lam_k) B_kj^2,
        # and mean(X) . coef for every alpha (for the intercept), in float64:
        #   mean(X) . W = sum_k v_k d_k B_kj,  v = Q^T (mean(X) * inv_s).
        a = torch.as_tensor(alphas, dtype=torch.float64, device=dev)
        D = 1.0 / (lam[None, :] + a[:, None])  # (n_alphas, V)
        F = 2.0 * D - D.square() * lam[None, :]
        tr_h = 1.0 + (lam[None, :] * D).sum(1)  # (n_alphas,) intercept counted
        v = _mm(Q.T, (x_mean * inv_s).to(dt)[:, None])[:, 0].double()
        VD = v[None, :] * D
        leak = z_sum.to(dt)[:, None]
        y_mean_dt = y_mean.to(dt)
        explained = torch.empty(len(alphas), m, dtype=torch.float64, device=dev)
        mean_dot = torch.empty(len(alphas), m, dtype=torch.float64, device=dev)
        step = _col_chunk(V)
        for j0 in range(0, m, step):
            j1 = min(m, j0 + step)
            Bc = B[:, j0:j1]
            Bc.sub_(leak * y_mean_dt[None, j0:j1])
            B64 = Bc.to(torch.float64, copy=True)
            mean_dot[:, j0:j1] = VD @ B64
            explained[:, j0:j1] = F @ B64.square_()
            del B64
        rss = (y_m2[None, :] - explained).clamp_min_(0.0)
        denom = n * (1.0 - tr_h / n).square()
        gcv = torch.where(denom[:, None] > 0, rss / denom[:, None], torch.inf)
        del explained, rss

        cols = torch.arange(m, device=dev)
        best = self._select_alphas(gcv, alphas)
        intercept = y_mean - mean_dot[best, cols]
        del gcv, mean_dot
        stage("gcv")

        # W = diag(inv_s) Q diag(d) B column chunk by column chunk, overwriting B (original units).
        Q.mul_(inv_s_dt[:, None])
        Dt = D.to(dt)
        step = _col_chunk(V, B.element_size())
        for j0 in range(0, m, step):
            j1 = min(m, j0 + step)
            Bc = B[:, j0:j1]
            if self.alpha_per_target:
                Bc.mul_(Dt[best[j0:j1]].T)
            else:
                Bc.mul_(Dt[int(best[0])][:, None])
            Bc.copy_(_mm(Q, Bc))
        del Q
        stage("coef")

        self.coef_ = B.cpu().numpy()
        self.intercept_ = intercept.to(dt).cpu().numpy()
        self.n_features_in_ = int(V)
        self.timings_ = stage.seconds
        return self

    def _select_alphas(self, gcv: torch.Tensor, alphas: np.ndarray) -> torch.Tensor:
        """Set ``alpha_`` and ``gcv_scores_`` from GCV (n_alphas, m); return the chosen index per output (m,)."""
        m = gcv.shape[1]
        if self.alpha_per_target:
            best = gcv.argmin(0)
            self.alpha_ = np.asarray(alphas)[best.cpu().numpy()]
            self.gcv_scores_ = gcv.cpu().numpy()
        else:
            mean_gcv = gcv.mean(1)
            best = torch.full((m,), int(mean_gcv.argmin()), device=gcv.device)
            self.alpha_ = float(alphas[int(best[0])])
            self.gcv_scores_ = mean_gcv.cpu().numpy()
        return best

    def _fit_dual(self, Xt, Yt, alphas, x_mean, y_mean, inv_s, stage, dev, dt, rows) -> "RidgeGCV":
        """The kernel form, for n < V. With Xs the standardised X (n, V), K = Xs Xs^T = U diag(lam) U^T and
        B = U^T (Y - ybar): residuals (I - H) y_j = U diag(alpha / (lam + alpha)) B_j, so per output
        RSS = sum_i (alpha / (lam_i + alpha))^2 B_ij^2, tr H = 1 + sum_i lam_i / (lam_i + alpha) (the
        centred kernel's zero eigenvalue on the constant vector adds nothing), and the weights in
        original units are diag(inv_s) Xs^T U diag(1 / (lam + alpha)) B."""
        n, V = Xt.shape
        m = Yt.shape[1]
        mu, inv_s_dt = x_mean.to(dt), inv_s.to(dt)
        Xs = torch.empty(n, V, dtype=dt, device=dev)
        for r0, r1 in _row_chunks(n, rows):
            Xs[r0:r1] = _block(Xt, r0, r1, dev, dt, mu, inv_s_dt)
        K = _mm(Xs, Xs.T).contiguous()
        stage("gram")
        lam, U = _eigen_psd(K, dev, dt)
        del K
        stage("eigh")
        B = torch.zeros(n, m, dtype=dt, device=dev)
        ones = torch.zeros(n, dtype=torch.float64, device=dev)
        for r0, r1 in _row_chunks(n, rows):
            Ur = U[r0:r1]
            _addmm_(B, Ur.T, _block(Yt, r0, r1, dev, dt))
            ones += _col_sum64(Ur)
        B.addr_(ones.to(dt), y_mean.to(dt), alpha=-1.0)  # U^T (Y - 1 ybar^T), Y never copied
        stage("zty")
        a = torch.as_tensor(alphas, dtype=torch.float64, device=dev)
        D = 1.0 / (lam[None, :] + a[:, None])  # (n_alphas, n)
        shrink = (a[:, None] * D).square()
        tr_h = 1.0 + (lam[None, :] * D).sum(1)
        B64 = B.double()
        rss = (shrink @ B64.square()).clamp_min_(0.0)  # (n_alphas, m)
        denom = n * (1.0 - tr_h / n).square()
        gcv = torch.where(denom[:, None] > 0, rss / denom[:, None], torch.inf)
        best = self._select_alphas(gcv, alphas)
        del rss, gcv, B64
        stage("gcv")
        B.mul_(D.to(dt)[best].T)  # column j scaled by 1 / (lam + alpha_j)
        W = _mm(Xs.T, _mm(U, B))
        W.mul_(inv_s_dt[:, None])
        del Xs, U, B
        intercept = y_mean.clone()
        step = _col_chunk(V)  # mean(X) . W in float64, a column block at a time (no float64 copy of W)
        for j0 in range(0, m, step):
            intercept[j0 : j0 + step] -= x_mean @ W[:, j0 : j0 + step].double()
        stage("coef")
        self.coef_ = W.cpu().numpy()
        self.intercept_ = intercept.to(dt).cpu().numpy()
        self.n_features_in_ = int(V)
        self.timings_ = stage.seconds
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (n, m) in ``dtype`` for X (n, V)."""
        return _predict(self, X, "fit(X, Y)")


def _predict(model: Any, X: Any, fit_call: str) -> np.ndarray:
    if not hasattr(model, "coef_"):
        raise BenchError(f"{type(model).__name__} is not fitted yet: call {fit_call} before predict")
    dev, dt = _resolve(model.device, model.dtype)
    rows = _positive_int("chunk_rows", getattr(model, "chunk_rows", 4096))
    Xt = _as_tensor("X", X)
    V = model.n_features_in_
    if Xt.ndim != 2 or Xt.shape[1] != V:
        raise BenchError(f"X has shape {tuple(Xt.shape)} but expected (n_samples, {V}) as in fit")
    W = torch.from_numpy(model.coef_).to(device=dev, dtype=dt)
    b = torch.from_numpy(np.asarray(model.intercept_)).to(device=dev, dtype=dt)
    out = np.empty((Xt.shape[0], W.shape[1]), dtype=np.float32 if dt == torch.float32 else np.float64)
    for r0, r1 in _row_chunks(Xt.shape[0], rows):
        out[r0:r1] = torch.addmm(b, Xt[r0:r1].to(device=dev, dtype=dt), W).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------------
# SelectiveRidge (fastl2lir)


class SelectiveRidge:
    """fastl2lir's per-output voxel selection + ridge, batched.

    For each output j: the ``n_feat`` voxels with the largest |Pearson correlation| to y_j on the
    training set (zero-variance voxels, np.var < 1e-8, count as correlation 0), then the ridge
    [X_I, 1] [w; b] ~ y_j with alpha added to the whole diagonal of the augmented Gram matrix, so
    the bias is regularised too, exactly as ``fastl2lir.FastL2LiR().fit(X, Y, alpha, n_feat)``.
    No standardisation is applied (fastl2lir does none).

    Parameters
    ----------
    alpha : float >= 0
    n_feat : int, 1 <= n_feat <= V (n_feat == V means no selection)
    device : str or torch.device
    dtype : {"float32", "float64"}
        Precision of the shared Gram matrix X^T X and of the per-output Cholesky solves. The
        statistics that decide the selection (X^T Y, voxel variances) are always float64: the
        selection compares correlations that can differ in the 8th digit.
    chunk_outputs : int
        Outputs solved per batch; memory ~ chunk_outputs * n_feat^2 * (8 + 3 * itemsize) bytes.
    chunk_rows : int
        Rows of X and Y processed at once.
    chunk_select : int or None
        Outputs whose float64 selection statistics (16 V bytes each) are held at once; None: as many as fit in
        256 MiB, less the float64 per-stimulus sums of X (8 V bytes per distinct row of Y) when Y's rows repeat.
        When m exceeds it (and the (V, V) Gram fits in 2 GiB) the Gram of all voxels is computed once and the
        outputs are selected and solved block by block, so memory stays flat in m.

    Attributes (after ``fit``)
    --------------------------
    coef_ : ndarray (V, m), ``dtype``, zeros for unselected voxels
    intercept_ : ndarray (m,), ``dtype``
    selected_ : ndarray (n_feat, m) int64, voxel indices per output, by decreasing |corr|
    n_features_in_ : int
    timings_ : dict[str, float]  wall seconds per fit stage

    Differences from fastl2lir: outputs with zero variance get correlation 0 for every voxel
    (fastl2lir gets NaN); ties in |corr| may be broken differently.
    """

    def __init__(
        self,
        alpha: float = 100.0,
        n_feat: int = 500,
        device: Any = "cpu",
        dtype: str = "float32",
        chunk_outputs: int = 32,
        chunk_rows: int = 4096,
        chunk_select: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.n_feat = n_feat
        self.device = device
        self.dtype = dtype
        self.chunk_outputs = chunk_outputs
        self.chunk_rows = chunk_rows
        self.chunk_select = chunk_select

    def fit(self, X: Any, Y: Any) -> "SelectiveRidge":
        """Fit on X (n, V) and Y (n, m), float32 or float64 arrays/tensors. Returns self."""
        dev, dt = _resolve(self.device, self.dtype)
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            raise BenchError(f"alpha must be a finite number >= 0, got {self.alpha!r}") from None
        if not (math.isfinite(alpha) and alpha >= 0):
            raise BenchError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        k = _positive_int("n_feat", self.n_feat)
        c_out = _positive_int("chunk_outputs", self.chunk_outputs)
        rows = _positive_int("chunk_rows", self.chunk_rows)
        Xt, Yt = _check_xy(X, Y)
        n, V = Xt.shape
        m = Yt.shape[1]
        if k > V:
            raise BenchError(f"X has shape {tuple(Xt.shape)} but n_feat={k} needs at least {k} voxels (columns)")
        f64 = torch.float64
        stage = _Stages(dev)

        x_mean, x_m2 = _column_stats("X", Xt, dev)
        y_mean, y_m2 = _column_stats("Y", Yt, dev)
        mu = x_mean.to(dt)
        x_var = x_m2 / n
        stage("stats")

        # Output blocks: the float64 statistics that rank the voxels (X^T Y and the correlations) take 16 V bytes
        # per output, 5.7 GB for Brain2Sound's 53,760 conv5_3 units. With many outputs they are built, used and
        # dropped one block of outputs at a time, over a Gram of all V voxels computed once first (when it fits in
        # _GRAM_ALL_BYTES; otherwise all outputs form one block and the Gram covers the union of their selections).
        # Repeated target rows (one per presentation of a stimulus): X's rows summed per distinct Y row, in float64,
        # part of the selection statistics' memory budget.
        S = None
        groups = _repeated_rows(Yt)
        if groups is not None:
            first, group = groups[0].to(Yt.device), groups[1].to(dev)
            S = torch.zeros(len(first), V, dtype=f64, device=dev)
            for r0, r1 in _row_chunks(n, rows):
                S.index_add_(0, group[r0:r1], _block(Xt, r0, r1, dev, f64))
            stage("group")
        budget = _SELECT_BYTES - (0 if S is None else S.numel() * 8)
        block = self.chunk_select or max(c_out, budget // (16 * V))
        block = _positive_int("chunk_select", block)
        itemsize = torch.finfo(dt).bits // 8
        blocked = m > block and V * V * itemsize <= _GRAM_ALL_BYTES
        if not blocked:
            block = m
        near_zero_all = bool((x_mean.square() <= x_var).all())
        G = self._gram(Xt, None, x_mean, x_var, mu, near_zero_all, dev, dt, rows, stage) if blocked else None

        g = n * alpha / (n + alpha)
        W = torch.zeros(V, m, dtype=dt, device=dev)
        b = torch.empty(m, dtype=f64, device=dev)
        selected = torch.empty(k, m, dtype=torch.int64, device=dev)
        for b0 in range(0, m, block):
            b1 = min(m, b0 + block)
            # The statistics that rank the voxels (X^T Y) in float64 from the exact float64 copy of each row chunk:
            # float32 rounding would reorder near-ties in |corr| and select other voxels than fastl2lir.
            C = torch.zeros(V, b1 - b0, dtype=f64, device=dev)
            if S is not None:  # X^T Y = S^T Y_u over the distinct rows of Y
                Y64 = Yt[first, b0:b1].to(device=dev, dtype=f64)
                stage("convert")
                _addmm_(C, S.T, Y64)
                del Y64
                stage("xty")
            else:
                Yb = Yt[:, b0:b1]
                for r0, r1 in _row_chunks(n, rows):
                    X64 = _block(Xt, r0, r1, dev, f64)
                    Y64 = _block(Yb, r0, r1, dev, f64)
                    stage("convert")
                    _addmm_(C, X64.T, Y64)
                    del X64, Y64
                    stage("xty")
            # Centre in float64 (no cancellation issue at float64 for data means up to ~1e6 x std).
            C -= n * x_mean[:, None] * y_mean[None, b0:b1]
            # Pearson correlation from the same statistics (the n-1 factors cancel).
            corr = C / (x_m2.sqrt()[:, None] * y_m2[b0:b1].sqrt()[None, :])
            corr[x_var < _FASTL2LIR_VAR_FLOOR] = 0.0
            corr[:, y_m2[b0:b1] == 0] = 0.0
            corr = corr.abs_().nan_to_num_(0.0)
            stage("corr")
            for j0 in range(0, b1 - b0, c_out):
                j1 = min(b1 - b0, j0 + c_out)
                selected[:, b0 + j0 : b0 + j1] = torch.topk(corr[:, j0:j1], k, dim=0, largest=True, sorted=True).indices
            del corr
            stage("select")
            if blocked:
                union, full = None, True
            else:
                # The Gram over the union of the selected voxels only (all V when the selections cover them; far
                # fewer on real data with tens of thousands of voxels, where the full (V, V) Gram would not fit).
                union = torch.unique(selected[:, b0:b1])
                full = len(union) == V
                near_zero = bool((x_mean[union].square() <= x_var[union]).all())
                G = self._gram(Xt, None if full else union, x_mean, x_var, mu, near_zero, dev, dt, rows, stage)
            self._solve_block(G, C, selected, union, full, W, b, b0, b1, x_mean, y_mean, alpha, g, n, c_out, Xt, stage)
            del C
            if not blocked:
                del G
        self.coef_ = W.cpu().numpy()
        self.intercept_ = b.to(dt).cpu().numpy()
        self.selected_ = selected.cpu().numpy()
        self.n_features_in_ = int(V)
        self.timings_ = stage.seconds
        return self

    @staticmethod
    def _gram(Xt, union, x_mean, x_var, mu, near_zero_mean, dev, dt, rows, stage) -> torch.Tensor:
        """X^T X of the centred X over ``union`` (None: all voxels), both triangles, in ``dt``.

        Where every voxel's mean is within one standard deviation of 0 (z-scored data), the uncentred Gram minus
        n mu mu^T loses at most a factor 2 in relative precision and needs no centred copy of X; raw voxels with
        large means are centred first."""
        n, V = Xt.shape
        full = union is None
        size = V if full else len(union)
        G = torch.zeros(size, size, dtype=dt, device=dev)
        view_only = near_zero_mean and full and Xt.dtype == dt and _on_cpu(Xt, dev)
        for r0, r1 in _row_chunks(n, n if view_only else rows):  # a view costs no memory: one syrk
            Xc = _block(Xt, r0, r1, dev, dt, None if near_zero_mean else mu)
            if not full:
                Xc = Xc[:, union].contiguous()
            stage("convert")
            _gram_upper_(G, Xc)
            del Xc
            stage("gram")
        if near_zero_mean:
            mu_dt = (x_mean if full else x_mean[union]).to(dt)
            G.addr_(mu_dt, mu_dt, alpha=-float(n))  # in place, no (V, V) temporary
        _mirror_upper_(G)
        stage("mirror")
        return G

    @staticmethod
    def _solve_block(G, C, selected, union, full, W, b, b0, b1, x_mean, y_mean, alpha, g, n, c_out, Xt, stage) -> None:
        """Solve outputs b0:b1 (their X^T y in C (V, b1 - b0)), writing W[:, b0:b1] and b[b0:b1].

        With a ones column and alpha on the whole diagonal, eliminating the bias leaves
          (M + g mu_I mu_I^T) w = c + g ybar mu_I,   M = Gc_II + alpha I,  c = Xc_I^T y,
          g = n alpha / (n + alpha),                 b = n / (n + alpha) (ybar - mu_I . w),
        fastl2lir's augmented system. Sherman-Morrison keeps the rank-one mean term (huge for raw, uncentred
        voxels) out of the factorisation, so M is factorised in G's dtype:
          w = x_c + x_mu g (ybar - mu_I . x_c) / (1 + g mu_I . x_mu),  x_c = M^-1 c, x_mu = M^-1 mu_I.

        Outputs go in chunks of ``c_out``. On a CPU with few threads the next chunk's Gram blocks are gathered on a
        second thread (numba, no GIL) while this one factorises the current chunk with single-threaded LAPACK: the
        gather is memory-bound and the factorisation compute-bound, so they overlap on two cores."""
        chunks = [(j0, min(b1, j0 + c_out)) for j0 in range(b0, b1, c_out)]
        k = selected.shape[0]

        def gather(j0: int, j1: int, buf: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
            idx = selected[:, j0:j1].T.sort(1).values  # (c, k); sorted rows make the gather cache-friendlier
            pos = idx if full else torch.searchsorted(union, idx.contiguous())  # rows / columns of G
            return idx, _gather_square(G, pos, buf)  # (c, k, k) in G's dtype: Gram of output j's voxels

        def solve(j0: int, j1: int, idx: torch.Tensor, A: torch.Tensor) -> None:
            A.diagonal(dim1=-2, dim2=-1).add_(alpha)
            mu_i = x_mean[idx]  # (c, k) float64
            cols = torch.arange(j0 - b0, j1 - b0, device=G.device)
            rhs = torch.stack([C[idx, cols[:, None]], mu_i], 2).to(G.dtype)  # (c, k, 2)
            sol, bad = _cholesky_solve_batch(A, rhs)
            if bad is not None:
                raise BenchError(
                    f"X has shape {tuple(Xt.shape)} and the selected voxels' Gram matrix for output "
                    f"{j0 + bad} is singular at alpha={alpha:g}; expected alpha > 0"
                )
            sol = sol.to(torch.float64)
            x_c, x_mu = sol[:, :, 0], sol[:, :, 1]
            ybar = y_mean[j0:j1]
            w = x_c + x_mu * (g * (ybar - (mu_i * x_c).sum(1)) / (1.0 + g * (mu_i * x_mu).sum(1)))[:, None]
            b[j0:j1] = (n / (n + alpha)) * (ybar - (mu_i * w).sum(1))
            W[:, j0:j1].scatter_(0, idx.T, w.T.to(G.dtype))

        if G.device.type != "cpu" or not _few_threads():
            for j0, j1 in chunks:
                idx, A = gather(j0, j1, None)
                stage("gather")
                solve(j0, j1, idx, A)
                stage("solve")
            return
        from concurrent.futures import ThreadPoolExecutor

        from bench.training import pinned_threads

        # Two gather buffers, reused: one is filled while the other is factorised.
        bufs = [np.empty((min(c_out, b1 - b0), k, k), dtype=_NP[G.dtype]) for _ in range(2)]
        # torch's and BLAS's own thread pools off for the loop: their idle workers otherwise spin on the core the
        # other thread needs (measured: the factorisations took 3.8-4.0 s instead of 2.5 s per 3,072 outputs, as
        # with OMP_WAIT_POLICY=PASSIVE).
        with pinned_threads(1), ThreadPoolExecutor(1) as pool:
            pending = pool.submit(gather, *chunks[0], bufs[0])
            for i, (j0, j1) in enumerate(chunks):
                idx, A = pending.result()
                stage("gather")  # the wait for the gather thread, beyond the overlap
                if i + 1 < len(chunks):
                    pending = pool.submit(gather, *chunks[i + 1], bufs[(i + 1) % 2])
                solve(j0, j1, idx, A)
                stage("solve")

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (n, m) in ``dtype`` for X (n, V)."""
        return _predict(self, X, "fit(X, Y)")
