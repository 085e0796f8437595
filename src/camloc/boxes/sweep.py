"""wsolevaluation's threshold sweep, every level at once: exact, and without calling OpenCV.

wsolevaluation (Choe et al., CVPR 2020) boxes a uint8 map ``gray`` at each level ``L`` by keeping
the pixels ``gray > L``, running ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` and boxing
the contours with ``boundingRect`` as ``[x, y, x + w, y + h]`` clipped to ``W - 1`` / ``H - 1``.
V1 keeps the contour of largest ``cv2.contourArea`` (the first in OpenCV's order on ties), V2
keeps every contour, hole contours included; no contour gives ``[0, 0, 0, 0]``. The plain way is
one findContours call per level (``tests/helpers/wsol_oracle.py``, ~3 ms for 100 levels of 224 x 224).
The level sets are nested, so here one sweep per image answers every level, with the same
float64 IoU values as the plain loop (tests/boxes/test_sweep.py checks equality, traps included).

What findContours (Suzuki-Abe border following) gives, and how it is read off here. Foreground
is 8-connected, background 4-connected, and pixels beyond the image are background.

* Outer contours: one per 8-connected component of ``gray > L``, boxed by the component's
  bounding box.
* Hole contours: one per 4-connected component of ``gray <= L`` not reaching the image border.
  The border is traced through the foreground pixels 4-adjacent to the hole, so the box is the
  hole's bounding box grown by one pixel on each side.
* V1, the largest contourArea: the shoelace area of the traced polygon through pixel centres.
  A hole's polygon lies inside its parent's outer polygon, and a nested component's outer
  polygon strictly inside its enclosing hole's, so a largest contour is the outer contour of a
  top-level component (one not inside a hole); a hole can at most tie with its own parent,
  which OpenCV lists first and which has the same box. The outer polygon of a top-level
  component C encloses filled(C), C with everything inside its holes: of each unit square
  between 2 x 2 pixel centres (a "window") it covers all when the four pixels are in filled(C),
  half with three, nothing otherwise, so ``area = W4 + W3 / 2``. With ``tau(p)`` the lowest
  level at which p is joined to the outside by 4-connected background, the filled regions at
  level L are the 8-connected components of ``tau > L``. Ties in area go to the top-level
  contour OpenCV lists first, the last found by its raster scan: the component whose first
  pixel in raster order comes last.

The sweep. Each pixel gets its rank, the number of levels below its value (kept at the k-th
level iff rank > k). Runs of equal rank along rows are joined into 4-connected flat zones
(union-find over the runs of consecutive rows). Then, over the zones only: the background
(zones of rank <= k, 4-adjacency, k ascending) gives the holes of every level and tau; the
foreground (rank > k, 8-adjacency, k descending) gives every level's components with their
boxes. For V1, each window adds one half-unit of area when its pixel of second-smallest tau
arrives and one when its pixel of smallest tau does; summed per zone, a component's area is
the sum over its zones, exactly so at levels without holes (where ``tau > L`` is ``gray > L``).
At a level with holes only top-level components compete (the outside just above their first
pixel), and if there are several their filled regions are walked over the zone graph to sum
their areas: rare on CAMs, and still exact.

Cost: O(H * W) to find the runs, then work in the number of runs and zones (on CAMs about a
third and an eighth of the pixels) plus the components at each level. The kernels are compiled by
numba (``cache=True``: the first use on a machine compiles for ~15 s, later processes load the
cache in ~0.3 s) and release the GIL, so ``wsol_best_ious_batch`` runs images on several
threads, each with a workspace of its own that is reused from image to image.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

from ..errors import InvalidArgument

__all__ = ["wsol_best_ious", "wsol_best_ious_batch"]


def numba_cache_dir(source_dir: str, user_cache_dir: str, temp_dir: str) -> str | None:
    """Where numba should cache the kernels when it has nowhere of its own, else None (its own choice).

    numba's ``cache=True`` writes beside the source or in the user's cache folder, and fails at the
    first call ("no locator available") when it can write neither: a read-only install run by a user
    without a writable home (a service account, a container's ``nobody``). Such a user gets a folder
    of its own in the temp folder.
    """
    if _writable(os.path.join(source_dir, "__pycache__")) or _writable(user_cache_dir):
        return None
    return os.path.join(temp_dir, f"camloc-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}")


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


if not getattr(nb.config, "CACHE_DIR", ""):  # set by numba from NUMBA_CACHE_DIR
    from numba.misc.appdirs import AppDirs

    _cache_dir = numba_cache_dir(
        os.path.dirname(__file__), AppDirs(appname="numba", appauthor=False).user_cache_dir, tempfile.gettempdir()
    )
    if _cache_dir is not None:
        setattr(nb.config, "CACHE_DIR", _cache_dir)  # noqa: B010 - numba sets its config attributes at run time

# The arrays the two passes share and those of each pass, grouped (numba passes a namedtuple of
# arrays to a compiled function as one argument). Per zone, numbered by rank (see _zones):
#: start: the zones of rank t are start[t]:start[t + 1]; raster: number in raster order of first
#: pixel; rank; x0, y0, x1, y1: box; up: the zone just above the first pixel (-1: top row);
#: border: 1 when touching the image border; ev: window events (twice the contour area, see _window_row).
_Zones = namedtuple("_Zones", "start raster rank x0 y0 x1 y1 up border ev")
#: A pass's components: union-find (root, size, next, tail: see _merge), their boxes, the list of
#: active roots (act, pos: a root's index in act), and each root's best IoU (cache; dirty: to redo).
_Forest = namedtuple("_Forest", "root size next tail x0 y0 x1 y1 act pos cache dirty")
#: The background pass: zone pairs by rank (ustart, up: see _bucket_pairs), ext (a component
#: reaches the border), and what it finds: tau per zone, the best hole IoU per level (out).
_Background = namedtuple("_Background", "ustart up ext tau out")
#: The foreground pass: zone pairs by rank (dstart, dp), twice each component's contour area
#: (area2) and its first zone (firstz), the zone graph walk's arrays (adj, astart, mark, stack),
#: and the best IoU per level of any component's box (out2: V2) and of the largest one's (out1: V1).
_Foreground = namedtuple("_Foreground", "dstart dp area2 firstz adj astart mark stack out2 out1")


@nb.njit(cache=True, nogil=True, inline="always")
def _take(pool, at, n):
    """The next n items of a workspace pool, and the new fill mark."""
    if at + n > pool.size:
        raise RuntimeError("sweep workspace too small")
    return pool[at : at + n], at + n


@nb.njit(cache=True, nogil=True, inline="always")
def _merge(root, size, mnext, mtail, a, b):
    """Join the components of roots a != b; returns (new root, absorbed root).

    Union-find as "quick-find": every member holds its
    root, so a find is one load, and a union relabels the smaller component's members (listed
    through mnext, the last one mtail[root]).
    """
    if size[a] < size[b]:
        a, b = b, a
    m = b
    while m != -1:
        root[m] = a
        m = mnext[m]
    mnext[mtail[a]] = b
    mtail[a] = mtail[b]
    size[a] += size[b]
    return a, b


@nb.njit(cache=True, nogil=True)
def _best_iou(bx0, by0, bx1, by1, gt):
    """Max over GT boxes of wsolevaluation's pixel-inclusive IoU (the oracle's ``iou``)."""
    best = 0.0
    for g in range(gt.shape[0]):
        gx0, gy0, gx1, gy1 = gt[g, 0], gt[g, 1], gt[g, 2], gt[g, 3]
        iw = max(0, min(bx1, gx1) - max(bx0, gx0) + 1)
        ih = max(0, min(by1, gy1) - max(by0, gy0) + 1)
        inter = iw * ih
        union = (bx1 - bx0 + 1) * (by1 - by0 + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
        v = 0.0 if union <= 0 else inter / union
        if g == 0 or v > best:
            best = v
    return best


@nb.njit(cache=True, nogil=True, inline="always")
def _remove(act, pos, nact, r):
    """Swap-remove root r from the active list; returns the new length."""
    j = pos[r]
    last = act[nact - 1]
    act[j] = last
    pos[last] = j
    return nact - 1


@nb.njit(cache=True, nogil=True, inline="always")
def _join_box(x0, y0, x1, y1, a, b):
    """Box a grows to cover box b."""
    x0[a] = min(x0[a], x0[b])
    y0[a] = min(y0[a], y0[b])
    x1[a] = max(x1[a], x1[b])
    y1[a] = max(y1[a], y1[b])


@nb.njit(cache=True, nogil=True)
def _runs(g, H, W, lut, rx0, rx1, rank, rowstart):
    """Maximal runs of equal rank along each row, in raster order; returns their count.

    rx0 and rank need H * W + 1 slots (the slot after the last run is written to).
    """
    n = 0
    for y in range(H):
        rowstart[y] = n
        base = y * W
        prev = -1
        for x in range(W):
            r = lut[g[base + x]]
            rx0[n] = x  # becomes a run's start only when n moves past it
            rank[n] = r
            n += r != prev
            prev = r
        for i in range(rowstart[y], n - 1):
            rx1[i] = rx0[i + 1] - 1
        rx1[n - 1] = W - 1
    rowstart[H] = n
    return n


@nb.njit(cache=True, nogil=True, inline="always")
def _corner_window(n0, n1, n2, n3, key, ev, sign):
    """The two events of a window of four pixels: one half-unit to the one of smallest key, one to the second smallest.

    The window's pixels (top-left, top-right, bottom-left, bottom-right) lie in n0..n3.
    """
    if key[n1] < key[n0]:
        n0, n1 = n1, n0
    if key[n3] < key[n2]:
        n2, n3 = n3, n2
    if key[n2] < key[n0]:
        lo = n2
        second = n0 if key[n0] <= key[n3] else n3
    else:
        lo = n0
        second = n2 if key[n2] <= key[n1] else n1
    ev[lo] += sign
    ev[second] += sign


@nb.njit(cache=True, nogil=True)
def _walk(H, W, R, rx1, rank, rowstart, root, size, mnext, mtail, evr, ra4, rb4, rad, rbd, dcount, ucount, zcount):
    """One pass over the runs of every two consecutive rows, left to right.

    - joins the runs of equal rank that overlap (4-connected flat zones; quick-find on root);
    - lists the pairs of runs of rows y, y + 1 of different rank holding 4-adjacent pixels
      (ra4, rb4) and the pairs touching only diagonally that 8-connectivity needs (rad, rbd:
      those of a window whose other two pixels have lower ranks), and counts every pair of
      runs holding 8-adjacent pixels by lower rank (dcount[t + 1]), and the 4-adjacent ones
      (neighbours in a row included) by higher rank (ucount[t + 1]);
    - adds each window's events keyed by rank to its runs (evr, see _window_row);
    - counts the zones of each rank (zcount[t + 1]).
    Returns (number of vertical 4-pairs, number of diagonal pairs).
    """
    for i in range(R):
        root[i] = i
        size[i] = 1
        mnext[i] = -1
        mtail[i] = i
        evr[i] = 0
        zcount[rank[i] + 1] += 1
    n4 = 0
    nd = 0
    for y in range(H):
        i, ie = rowstart[y], rowstart[y + 1]
        for k in range(i, ie - 1):  # neighbours in a row, of different rank
            dcount[min(rank[k], rank[k + 1]) + 1] += 1
            ucount[max(rank[k], rank[k + 1]) + 1] += 1
        if y + 1 == H:
            break
        j = ie
        x = 0
        while True:  # the runs i (row y) and j (row y + 1) overlap in x from x on
            ri = rank[i]
            rj = rank[j]
            if ri == rj:
                a = root[i]
                b = root[j]
                if a != b:
                    _merge(root, size, mnext, mtail, a, b)
                    zcount[ri + 1] -= 1
            else:
                ra4[n4] = i
                rb4[n4] = j
                n4 += 1
                dcount[min(ri, rj) + 1] += 1
                ucount[max(ri, rj) + 1] += 1
            e1 = rx1[i]
            e2 = rx1[j]
            e = min(e1, e2)
            evr[i if ri <= rj else j] += 2 * (e - x)  # windows x .. e-1 lie on runs i, j only
            if e == W - 1:
                break
            ni = i if e1 > e else i + 1
            nj = j if e2 > e else j + 1
            _corner_window(i, ni, j, nj, rank, evr, 1)  # the window at column e
            if e1 == e2:  # both runs end in column e: the next ones touch them diagonally
                # a diagonal pair matters only while the window's other two pixels are both out
                # (else 4-adjacent pairs join it first): when its lower rank exceeds theirs
                rni = rank[ni]
                rnj = rank[nj]
                if min(ri, rnj) > max(rni, rj):
                    rad[nd] = i
                    rbd[nd] = nj
                    nd += 1
                    dcount[min(ri, rnj) + 1] += 1
                elif min(rni, rj) > max(ri, rnj):
                    rad[nd] = ni
                    rbd[nd] = j
                    nd += 1
                    dcount[min(rni, rj) + 1] += 1
            i = ni
            j = nj
            x = e + 1
    return n4, nd


@nb.njit(cache=True, nogil=True)
def _zones(H, W, K, R, rx0, rx1, rank, rowstart, root, evr, num, zid, zones):
    """Numbers the flat zones by rank, and in raster order of their first pixel within a rank.

    Fills the _Zones record: the zones of rank t are start[t]:start[t + 1] (start[t + 1] holds
    their count on entry, from _walk); raster[z] is z's number in raster order. Gathers each
    zone's rank, box, border contact, events (summed over its runs) and up, the zone of the
    pixel just above its first pixel (-1 on the top row); zid[run] is the run's zone (zid may
    alias root). Returns the number of zones.
    """
    zstart, zraster, zrank = zones.start, zones.raster, zones.rank
    zx0, zy0, zx1, zy1 = zones.x0, zones.y0, zones.x1, zones.y1
    zup, zborder, ev = zones.up, zones.border, zones.ev
    for t in range(K + 1):
        zstart[t + 1] += zstart[t]
    fill = zstart[: K + 1].copy()
    for i in range(R):
        num[i] = -1
    nz = 0
    for y in range(H):
        p = rowstart[y - 1] if y > 0 else 0
        for i in range(rowstart[y], rowstart[y + 1]):
            r = root[i]
            z = num[r]
            if z < 0:  # the first run of a new zone
                t = rank[i]
                z = fill[t]
                fill[t] = z + 1
                num[r] = z
                zraster[z] = nz
                nz += 1
                zrank[z] = t
                zx0[z] = rx0[i]
                zx1[z] = rx1[i]
                zy0[z] = y
                zy1[z] = y
                zborder[z] = 0
                ev[z] = 0
                if y == 0:
                    zup[z] = -1
                else:
                    while rx1[p] < rx0[i]:
                        p += 1
                    zup[z] = zid[p]  # p < i: numbered already
            else:
                zx0[z] = min(zx0[z], rx0[i])
                zx1[z] = max(zx1[z], rx1[i])
                zy1[z] = y
            zid[i] = z
            ev[z] += evr[i]
            if y == 0 or y == H - 1 or rx0[i] == 0 or rx1[i] == W - 1:
                zborder[z] = 1
    return nz


@nb.njit(cache=True, nogil=True)
def _bucket_pairs(H, n4, nd, ra4, rb4, rad, rbd, rank, rowstart, zid, K, dstart, dp, ustart, up):
    """The zone pairs of the run pairs, bucketed by rank (counting sort; _walk counted them).

    Each pair is stored as two consecutive entries:
    - dp[2 * dstart[t]:2 * dstart[t + 1]]: pairs holding 8-adjacent pixels whose lower rank is t
      (the foreground joins them at rank t, once both are in);
    - up[2 * ustart[t]:2 * ustart[t + 1]]: pairs holding 4-adjacent pixels whose higher rank is t
      (the background joins them at t).
    A pair may appear more than once, and a diagonal pair may lie in one zone (both harmless).
    """
    for t in range(K + 1):
        dstart[t + 1] += dstart[t]
        ustart[t + 1] += ustart[t]
    dfill = dstart[: K + 1].copy()
    ufill = ustart[: K + 1].copy()
    nh = rowstart[H]
    y = 0
    for e in range(nh + n4 + nd):
        # the e-th pair of runs p, q: neighbours in a row, then 4-adjacent rows, then diagonal
        if e < nh:
            if e + 1 == rowstart[y + 1]:  # the last run of a row has no right neighbour
                y += 1
                continue
            p = e
            q = e + 1
        elif e < nh + n4:
            p = ra4[e - nh]
            q = rb4[e - nh]
        else:
            p = rad[e - nh - n4]
            q = rbd[e - nh - n4]
        a = zid[p]
        b = zid[q]
        rp = rank[p]
        rq = rank[q]
        t = min(rp, rq)
        i = dfill[t]
        dp[2 * i] = a
        dp[2 * i + 1] = b
        dfill[t] = i + 1
        if e < nh + n4:
            t = max(rp, rq)
            i = ufill[t]
            up[2 * i] = a
            up[2 * i + 1] = b
            ufill[t] = i + 1


@nb.njit(cache=True, nogil=True)
def _window_row(y, W, rx1, rowstart, zid, key, ev, sign):
    """Window events of rows y, y + 1, keyed by key[zone], added to ev[zone] times sign.

    Window (x, y) holds the pixels (x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1). Counting
    those with key > k, it covers half a unit of contour area at count 3 and a whole one at
    count 4, so as k falls it gains one half-unit when its pixel of second-smallest key arrives
    and one when its pixel of smallest key does: those are its two events. Ties go by position
    exactly as in _walk, so events can be taken back with sign -1.
    """
    i = rowstart[y]
    j = rowstart[y + 1]
    x = 0
    while True:
        za = zid[i]
        zb = zid[j]
        e1 = rx1[i]
        e2 = rx1[j]
        e = min(e1, e2)
        ev[za if key[za] <= key[zb] else zb] += sign * 2 * (e - x)
        if e == W - 1:
            break
        ni = i if e1 > e else i + 1
        nj = j if e2 > e else j + 1
        _corner_window(za, zid[ni], zb, zid[nj], key, ev, sign)
        i = ni
        j = nj
        x = e + 1


@nb.njit(cache=True, nogil=True)
def _hole_pass(K, H, W, gt, zones, forest, background):
    """Background, level index k ascending: the zones of rank <= k joined by 4-adjacency.

    background.out[k]: the best IoU of a hole (a component not reaching the image border), boxed
    one pixel wider on each side; -1.0 where there is none. background.tau[z]: the first k at
    which zone z is joined to the border (K if never).
    """
    zstart, zborder, zx0, zy0, zx1, zy1 = zones.start, zones.border, zones.x0, zones.y0, zones.x1, zones.y1
    root, size, mnext, mtail = forest.root, forest.size, forest.next, forest.tail
    x0, y0, x1, y1 = forest.x0, forest.y0, forest.x1, forest.y1
    act, pos, cache, dirty = forest.act, forest.pos, forest.cache, forest.dirty
    ustart, up, ext, tau, out = background
    for z in range(zstart[K + 1]):
        tau[z] = K
    nact = 0
    for k in range(K):
        z0, z1 = zstart[k], zstart[k + 1]
        for z in range(z0, z1):
            root[z] = z
            size[z] = 1
            mnext[z] = -1
            mtail[z] = z
            x0[z] = zx0[z]
            x1[z] = zx1[z]
            y0[z] = zy0[z]
            y1[z] = zy1[z]
            ext[z] = zborder[z]
            if zborder[z]:
                tau[z] = k
            else:
                act[nact] = z
                pos[z] = nact
                nact += 1
                dirty[z] = 1
        for i in range(ustart[k], ustart[k + 1]):  # 4-adjacent zone pairs, the higher of rank k
            ra = root[up[2 * i]]
            rb = root[up[2 * i + 1]]
            if ra == rb:
                continue
            xa = ext[ra]
            xb = ext[rb]
            if xa != xb:  # a hole reaches the border: its zones join the outside now
                r = rb if xa else ra
                nact = _remove(act, pos, nact, r)
                m = r
                while m != -1:
                    tau[m] = k
                    m = mnext[m]
            elif not xa:  # two holes meet
                _join_box(x0, y0, x1, y1, ra, rb)
                _join_box(x0, y0, x1, y1, rb, ra)
            a, b = _merge(root, size, mnext, mtail, ra, rb)
            ext[a] = xa | xb
            if not (xa or xb):
                nact = _remove(act, pos, nact, b)
                dirty[a] = 1
        best = -1.0
        for j in range(nact):
            r = act[j]
            if dirty[r]:
                cache[r] = _best_iou(x0[r] - 1, y0[r] - 1, min(x1[r] + 2, W - 1), min(y1[r] + 2, H - 1), gt)
                dirty[r] = 0
            best = max(best, cache[r])
        out[k] = best


@nb.njit(cache=True, nogil=True)
def _filled_area2(z0, k, tau, ev, dp, adj, astart, mark, stamp, stack):
    """Twice the contour area of the 8-connected component of the zones of tau > k holding z0.

    A walk over the zone adjacency (built into adj, astart on first use: astart[0] < 0).
    """
    nz = tau.size
    if astart[0] < 0:
        for z in range(nz + 1):
            astart[z] = 0
        for i in range(dp.size):
            astart[dp[i] + 1] += 1
        for z in range(nz):
            astart[z + 1] += astart[z]
        fill = astart[:-1].copy()
        for i in range(0, dp.size, 2):
            a = dp[i]
            b = dp[i + 1]
            adj[fill[a]] = b
            fill[a] += 1
            adj[fill[b]] = a
            fill[b] += 1
        for z in range(nz):
            mark[z] = -1
    mark[z0] = stamp
    stack[0] = z0
    n = 1
    total = 0
    while n > 0:
        n -= 1
        z = stack[n]
        total += ev[z]
        for i in range(astart[z], astart[z + 1]):
            m = adj[i]
            if mark[m] != stamp and tau[m] > k:
                mark[m] = stamp
                stack[n] = m
                n += 1
    return total


@nb.njit(cache=True, nogil=True)
def _outer_pass(K, H, W, gt, zones, forest, background, foreground):
    """Foreground, level index k descending: the zones of rank > k joined by 8-adjacency.

    out2[k]: the best IoU of a component's box (V2's outer contours); out1[k]: the IoU of the
    box of the component of largest contour area (V1); -1.0 where there is none.

    V1: with no hole at level k (holes[k] < 0) every component is top-level and its zones are
    exactly the zones of tau > k of its filled region, so twice its contour area is the sum of
    its zones' ev. With holes, only top-level components (the outside just above their first
    pixel) compete; when there are several, their filled regions are walked to sum ev (rare).
    tau and holes are the background pass's tau and out.
    """
    zstart, zraster, ev, zup = zones.start, zones.raster, zones.ev, zones.up
    zx0, zy0, zx1, zy1 = zones.x0, zones.y0, zones.x1, zones.y1
    root, size, mnext, mtail = forest.root, forest.size, forest.next, forest.tail
    x0, y0, x1, y1 = forest.x0, forest.y0, forest.x1, forest.y1
    act, pos, cache, dirty = forest.act, forest.pos, forest.cache, forest.dirty
    tau, holes = background.tau, background.out
    dstart, dp, area2, firstz, adj, astart, mark, stack, out2, out1 = foreground
    nz = zstart[K + 1]
    astart[0] = -1
    nact = 0
    for k in range(K - 1, -1, -1):
        t = k + 1
        z0, z1 = zstart[t], zstart[t + 1]
        for z in range(z0, z1):
            root[z] = z
            size[z] = 1
            mnext[z] = -1
            mtail[z] = z
            x0[z] = zx0[z]
            x1[z] = zx1[z]
            y0[z] = zy0[z]
            y1[z] = zy1[z]
            area2[z] = ev[z]
            firstz[z] = z
            act[nact] = z
            pos[z] = nact
            nact += 1
            dirty[z] = 1
        for i in range(dstart[t], dstart[t + 1]):  # 8-adjacent zone pairs, the lower of rank t
            ra = root[dp[2 * i]]
            rb = root[dp[2 * i + 1]]
            if ra == rb:
                continue
            a, b = _merge(root, size, mnext, mtail, ra, rb)
            _join_box(x0, y0, x1, y1, a, b)
            area2[a] += area2[b]
            if zraster[firstz[b]] < zraster[firstz[a]]:
                firstz[a] = firstz[b]
            nact = _remove(act, pos, nact, b)
            dirty[a] = 1
        if nact == 0:
            out2[k] = -1.0
            out1[k] = -1.0
            continue
        best = -1.0
        for j in range(nact):
            r = act[j]
            if dirty[r]:
                cache[r] = _best_iou(x0[r], y0[r], min(x1[r] + 1, W - 1), min(y1[r] + 1, H - 1), gt)
                dirty[r] = 0
            best = max(best, cache[r])
        out2[k] = best
        # V1: the largest contour area; ties go to the contour OpenCV lists first, the top-level
        # one found last by its raster scan: the component whose first pixel comes last
        win = -1
        if holes[k] < 0.0:
            for j in range(nact):
                r = act[j]
                if (
                    win < 0
                    or area2[r] > area2[win]
                    or (area2[r] == area2[win] and zraster[firstz[r]] > zraster[firstz[win]])
                ):
                    win = r
        else:
            ntop = 0
            for j in range(nact):
                r = act[j]
                u = zup[firstz[r]]
                if u < 0 or tau[u] <= k:
                    ntop += 1
                    win = r
            if ntop > 1:
                win = -1
                best_area = -1
                for j in range(nact):
                    r = act[j]
                    u = zup[firstz[r]]
                    if u < 0 or tau[u] <= k:
                        a2 = _filled_area2(firstz[r], k, tau, ev, dp, adj, astart, mark, k * nz + j, stack)
                        if win < 0 or a2 > best_area or (a2 == best_area and zraster[firstz[r]] > zraster[firstz[win]]):
                            win = r
                            best_area = a2
        out1[k] = cache[win]


def _pool_sizes(h: int, w: int, t: int) -> tuple[int, int, int, int]:
    """Sizes of the int32, int64, float64 and uint8 workspace pools for (h, w) maps, t levels."""
    n = h * w
    return 64 * n + 64, 7 * n + 5 * t + h + 64, n + 3 * t + 8, 4 * n + h + 8


@nb.njit(cache=True, nogil=True)
def _sweep_one(gray, levels, gt, v1, v2, wi, wl, wf, wb):
    H, W = gray.shape
    N = H * W
    g = gray.reshape(N)
    T = levels.size
    ai = 0
    al = 0
    af = 0
    ab = 0
    # distinct levels, ascending, clamped to [-1, 255] (every level below 0 keeps all pixels,
    # every level from 255 up keeps none); which[i]: the index of levels[i] among them
    srt = np.argsort(levels, kind="mergesort")
    lv, al = _take(wl, al, T)
    which, al = _take(wl, al, T)
    K = 0
    for i in range(T):
        L = min(max(levels[srt[i]], -1), 255)
        if K == 0 or L != lv[K - 1]:
            lv[K] = L
            K += 1
        which[srt[i]] = K - 1
    # rank of a value: how many of the distinct levels it exceeds; kept at level index k <=> rank > k
    lut = np.empty(256, np.int32)
    k = 0
    for v in range(256):
        while k < K and lv[k] < v:
            k += 1
        lut[v] = k

    rx0, ai = _take(wi, ai, N + 1)
    rx1, ai = _take(wi, ai, N)
    rank, ai = _take(wi, ai, N + 1)
    rowstart, al = _take(wl, al, H + 1)
    R = _runs(g, H, W, lut, rx0, rx1, rank, rowstart)

    root, ai = _take(wi, ai, R)
    size, ai = _take(wi, ai, R)
    mnext, ai = _take(wi, ai, R)
    mtail, ai = _take(wi, ai, R)
    ra4, ai = _take(wi, ai, 2 * R)
    rb4, ai = _take(wi, ai, 2 * R)
    rad, ai = _take(wi, ai, 2 * R)
    rbd, ai = _take(wi, ai, 2 * R)
    evr, al = _take(wl, al, R)
    dstart, al = _take(wl, al, K + 2)
    ustart, al = _take(wl, al, K + 2)
    zstart, al = _take(wl, al, K + 2)
    for t in range(K + 2):
        dstart[t] = 0
        ustart[t] = 0
        zstart[t] = 0
    n4, nd = _walk(
        H, W, R, rx1, rank, rowstart, root, size, mnext, mtail, evr, ra4, rb4, rad, rbd, dstart, ustart, zstart
    )

    zid = root  # read before written, run by run
    zraster, ai = _take(wi, ai, R)
    zrank, ai = _take(wi, ai, R)
    zx0, ai = _take(wi, ai, R)
    zy0, ai = _take(wi, ai, R)
    zx1, ai = _take(wi, ai, R)
    zy1, ai = _take(wi, ai, R)
    zup, ai = _take(wi, ai, R)
    zborder, ab = _take(wb, ab, R)
    ev, al = _take(wl, al, R)
    zones = _Zones(zstart, zraster, zrank, zx0, zy0, zx1, zy1, zup, zborder, ev)
    nz = _zones(H, W, K, R, rx0, rx1, rank, rowstart, root, evr, size, zid, zones)
    zrank = zrank[:nz]
    ev = ev[:nz]
    zones = _Zones(zstart, zraster, zrank, zx0, zy0, zx1, zy1, zup, zborder, ev)

    m = R - H + n4 + nd
    dp, ai = _take(wi, ai, 2 * m)
    up, ai = _take(wi, ai, 2 * (R - H + n4))
    _bucket_pairs(H, n4, nd, ra4, rb4, rad, rbd, rank, rowstart, zid, K, dstart, dp, ustart, up)
    dp = dp[: 2 * dstart[K + 1]]

    zroot, ai = _take(wi, ai, nz)
    zsize, ai = _take(wi, ai, nz)
    znext, ai = _take(wi, ai, nz)
    ztail, ai = _take(wi, ai, nz)
    x0, ai = _take(wi, ai, nz)
    y0, ai = _take(wi, ai, nz)
    x1, ai = _take(wi, ai, nz)
    y1, ai = _take(wi, ai, nz)
    act, ai = _take(wi, ai, nz)
    pos, ai = _take(wi, ai, nz)
    tau, ai = _take(wi, ai, nz)
    firstz, ai = _take(wi, ai, nz)
    adj, ai = _take(wi, ai, 2 * m)
    stack, ai = _take(wi, ai, nz)
    area2, al = _take(wl, al, nz)
    mark, al = _take(wl, al, nz)
    astart, al = _take(wl, al, nz + 1)
    cache, af = _take(wf, af, nz)
    outer, af = _take(wf, af, K)
    hole, af = _take(wf, af, K)
    large, af = _take(wf, af, K)
    dirty, ab = _take(wb, ab, nz)
    ext, ab = _take(wb, ab, nz)
    redo, ab = _take(wb, ab, H + 1)

    forest = _Forest(zroot, zsize, znext, ztail, x0, y0, x1, y1, act, pos, cache, dirty)
    background = _Background(ustart, up, ext, tau, hole)
    _hole_pass(K, H, W, gt, zones, forest, background)
    # the window events were keyed by rank: redo the row pairs that meet a zone whose tau differs
    for y in range(H + 1):
        redo[y] = 0
    for z in range(nz):
        if tau[z] != zrank[z]:
            for y in range(max(zy0[z] - 1, 0), zy1[z] + 1):
                redo[y] = 1
    for y in range(H - 1):
        if redo[y]:
            _window_row(y, W, rx1, rowstart, zid, zrank, ev, -1)
            _window_row(y, W, rx1, rowstart, zid, tau, ev, 1)
    foreground = _Foreground(dstart, dp, area2, firstz, adj, astart, mark, stack, outer, large)
    _outer_pass(K, H, W, gt, zones, forest, background, foreground)
    empty = _best_iou(0, 0, 0, 0, gt)
    for i in range(T):
        k = which[i]
        if outer[k] < 0.0:  # nothing kept: no contour
            v1[i] = empty
            v2[i] = empty
        else:
            v1[i] = large[k]
            v2[i] = max(outer[k], hole[k])


@nb.njit(cache=True, nogil=True)
def _sweep_range(grays, levels, gts, offsets, lo, hi, v1, v2, wi, wl, wf, wb):
    for i in range(lo, hi):
        _sweep_one(grays[i], levels[i], gts[offsets[i] : offsets[i + 1]], v1[i], v2[i], wi, wl, wf, wb)


def _check_gt(gt_boxes) -> np.ndarray:
    gt = np.ascontiguousarray(np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4))
    if gt.shape[0] == 0:
        raise InvalidArgument("gt_boxes", "at least one ground-truth box is needed")
    return gt


def wsol_best_ious(gray: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold level, the best IoU with any GT box of wsolevaluation's V1 box and V2 boxes.

    gray: uint8 (H, W) map; levels: integer (T,) (a pixel is kept when strictly greater; any
    order, repeats allowed); gt_boxes: integer (G, 4) inclusive ``x0, y0, x1, y1``, G >= 1.
    Returns ``(v1, v2)``, float64 (T,) each, equal to the per-level OpenCV loop
    (``tests/helpers/wsol_oracle.best_ious``) value for value.
    """
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2 or gray.size == 0:
        raise InvalidArgument("gray", f"gray must be a non-empty uint8 (H, W) array, got {gray.dtype} {gray.shape}")
    lv = np.ascontiguousarray(np.asarray(levels, dtype=np.int64).reshape(-1))
    gt = _check_gt(gt_boxes)
    v1 = np.empty(lv.size, np.float64)
    v2 = np.empty(lv.size, np.float64)
    h, w = gray.shape
    _sweep_one(np.ascontiguousarray(gray), lv, gt, v1, v2, *_pools(h, w, lv.size))
    return v1, v2


_local = threading.local()


def _pools(h: int, w: int, t: int) -> tuple[np.ndarray, ...]:
    """A workspace for _sweep_one, reused from call to call by each thread (the last size asked for).

    Reusing it means its memory is faulted in once rather than on every image.
    """
    sizes = _pool_sizes(h, w, t)
    cached = getattr(_local, "pools", None)
    if cached is None or cached[0] != sizes:
        ni, nl, nf, nb_ = sizes
        _local.pools = cached = (
            sizes,
            (np.empty(ni, np.int32), np.empty(nl, np.int64), np.empty(nf, np.float64), np.empty(nb_, np.uint8)),
        )
    return cached[1]


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def wsol_best_ious_batch(
    grays: np.ndarray, levels: np.ndarray, gt_boxes: list, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``wsol_best_ious`` of every image of a batch, images spread over ``threads`` threads.

    grays: uint8 (N, H, W); levels: integer (N, T); gt_boxes: N arrays of (G_i, 4).
    threads: None uses every core this process may run on; 1 runs in the calling thread.
    Returns ``(v1, v2)``, float64 (N, T) each.
    """
    grays = np.ascontiguousarray(grays)
    if grays.dtype != np.uint8 or grays.ndim != 3 or grays.shape[1] * grays.shape[2] == 0:
        raise InvalidArgument(
            "grays", f"grays must be a non-empty uint8 (N, H, W) array, got {grays.dtype} {grays.shape}"
        )
    n = grays.shape[0]
    lv = np.ascontiguousarray(np.asarray(levels, dtype=np.int64))
    if lv.ndim != 2 or lv.shape[0] != n:
        raise InvalidArgument("levels", f"levels must be (N, T) with N = {n}, got {lv.shape}")
    if len(gt_boxes) != n:
        raise InvalidArgument("gt_boxes", f"need {n} ground-truth box arrays, got {len(gt_boxes)}")
    gts = [_check_gt(b) for b in gt_boxes]
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in gts])
    packed = np.ascontiguousarray(np.concatenate(gts) if gts else np.zeros((0, 4), np.int64))
    v1 = np.empty(lv.shape, np.float64)
    v2 = np.empty(lv.shape, np.float64)
    threads = _default_threads() if threads is None else int(threads)
    if threads < 1:
        raise InvalidArgument("threads", f"threads must be >= 1, got {threads}")
    shape = (grays.shape[1], grays.shape[2], lv.shape[1])
    if threads == 1 or n <= 1:
        _sweep_range(grays, lv, packed, offsets, 0, n, v1, v2, *_pools(*shape))
        return v1, v2
    # each thread takes chunks of a few images in turn (even load), with a workspace of its own
    step = max(1, min(4, n // (threads * 4)))
    chunks = iter(range(0, n, step))
    lock = threading.Lock()

    def work() -> None:
        pools = _pools(*shape)
        while True:
            with lock:
                lo = next(chunks, None)
            if lo is None:
                return
            _sweep_range(grays, lv, packed, offsets, lo, min(lo + step, n), v1, v2, *pools)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    return v1, v2
