"""A direct port of the CAM authors' dt.c distance transform (Felzenszwalb & Huttenlocher's lower
envelope of parabolas, columns then rows, dt.c's double arithmetic): the oracle that camloc.dtbox's
use of scipy's exact Euclidean distance transform is checked against."""

import numpy as np

_INF = 1e20


def _dt_lines(f: np.ndarray) -> np.ndarray:
    """dt.c ``dt_row`` on every row of ``f`` (B, n) at once: the lower envelope of the parabolas
    ``(q - p)^2 + f[p]``, with dt.c's double arithmetic kept operation for operation."""
    f = np.ascontiguousarray(f, dtype=np.float64)
    nb, n = f.shape
    rows = np.arange(nb)
    v = np.zeros((nb, n), dtype=np.int64)
    z = np.empty((nb, n + 1), dtype=np.float64)
    z[:, 0] = -_INF
    z[:, 1] = _INF
    k = np.zeros(nb, dtype=np.int64)
    for q in range(1, n):
        fq = f[:, q] + float(q * q)  # f[q] + SQUARE(q)
        vk = v[rows, k]
        s = (fq - (f[rows, vk] + (vk * vk).astype(np.float64))) / (2 * q - 2 * vk).astype(np.float64)
        idx = rows[s <= z[rows, k]]
        while idx.size:  # while (s <= z[k]) { k--; s = ...; }
            k[idx] -= 1
            vi = v[idx, k[idx]]
            s[idx] = (fq[idx] - (f[idx, vi] + (vi * vi).astype(np.float64))) / (2 * q - 2 * vi).astype(np.float64)
            idx = idx[s[idx] <= z[idx, k[idx]]]
        k += 1
        v[rows, k] = q
        z[rows, k] = s
        z[rows, k + 1] = _INF
    d = np.empty_like(f)
    k[:] = 0
    for q in range(n):
        idx = rows[z[rows, k + 1] < q]
        while idx.size:  # while (z[k+1] < q) k++;
            k[idx] += 1
            idx = idx[z[idx, k[idx] + 1] < q]
        vk = v[rows, k]
        d[:, q] = ((q - vk) ** 2).astype(np.float64) + f[rows, vk]  # SQUARE(q-v[k]) + f[v[k]]
    return d


def dt_squared(m: np.ndarray) -> np.ndarray:
    """dt.c ``dt``: the 2-D separable transform of a float64 cost map, columns first, then rows.

    For a binary map encoded as 0 (background) / 1e20 (foreground) it is the squared Euclidean
    distance of each pixel to the nearest background pixel (pixels outside the image do not count as
    background); when there is no background at all the values stay near 1e20 with dt.c's rounding.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"dt_squared takes one (H, W) map, got shape {m.shape}")
    cols_done = _dt_lines(m.T).T
    return _dt_lines(cols_done)
