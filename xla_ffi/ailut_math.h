// Per-pixel arithmetic of the AiLUT / 3D-LUT transforms, shared by the CPU and the
// CUDA kernels so that the CPU tests exercise exactly what the GPU runs.
//
// Layouts (one batch element):
//   lut      [3][D][D][D]   lut[c][b][g][r], the last (fastest) axis is red
//   vertices [3][D]         rows R, G, B of sampling coordinates
//   pixel    r, g, b        channels-last image
//
// Semantics (docs/transform.md): per input channel x with vertex row v,
//   cell k = clamp(lower_bound(v, x) - 1, 0, D - 2)   (x == v[i] lands in cell i-1,
//                                                       a NaN x in the last cell)
//   t      = (x - v[k]) / (v[k+1] - v[k] + 1e-10)     (not clamped: extrapolates)
// and the output is the trilinear blend of the 8 lattice corners around (k_r, k_g, k_b).
// Every index produced here lies in [0, D-1] whatever the input values (NaN, inf,
// unsorted or duplicate vertices), which is what keeps the kernels in bounds.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AILUT_HD __host__ __device__ __forceinline__
#define AILUT_UNROLL _Pragma("unroll")
#else
#define AILUT_HD inline
#if defined(__clang__)
#define AILUT_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define AILUT_UNROLL _Pragma("GCC unroll 8")
#else
#define AILUT_UNROLL
#endif
#endif

namespace ailut {

template <typename T>
AILUT_HD T eps() {
  return static_cast<T>(1e-10);
}

// Position of one channel value inside its lattice cell.
template <typename T>
struct AxisPos {
  int k;    // cell index in [0, D-2]
  T t;      // fraction inside the cell (unclamped)
  T denom;  // v[k+1] - v[k] + eps: d t / d x = 1 / denom
};

AILUT_HD float ceil_t(float x) { return ceilf(x); }
AILUT_HD double ceil_t(double x) { return ceil(x); }

AILUT_HD int clamp_cell(int lower_bound, int d) {
  int k = lower_bound - 1;
  k = k < 0 ? 0 : k;
  return k > d - 2 ? d - 2 : k;
}

// lower_bound by bisection over v[0..d): the first i with v[i] >= x. The search moves
// right while !(v[mid] >= x), as the authors' kernels do, so a NaN pixel (for which
// every comparison is false) ends at d and lands in the last cell, D-2. The exact
// sequence of probes is fixed (mid = (lo + hi) / 2), so the cell picked for unsorted
// vertices is well defined and equal to the pure-JAX reference's.
template <typename T>
AILUT_HD int lower_bound_bisect(const T* v, int d, T x) {
  int lo = 0, hi = d;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (!(v[mid] >= x)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// lower_bound for a *sorted* row padded with +inf up to `padded` entries, where
// `padded` is a power of two > d. Branch-free, log2(padded) steps; equals the bisection
// on sorted rows (both find the partition point of `!(v[i] >= x)`; a NaN x gives
// padded - 1 >= d, the last cell after clamping).
template <typename T>
AILUT_HD int lower_bound_sorted(const T* v_padded, int padded, T x) {
  int base = 0;
  for (int step = padded >> 1; step > 0; step >>= 1) {
    base += !(v_padded[base + step - 1] >= x) ? step : 0;
  }
  return base;
}

template <typename T>
AILUT_HD AxisPos<T> axis_from_cell(const T* v, int k, T x) {
  AxisPos<T> p;
  p.k = k;
  const T v0 = v[k];
  p.denom = (v[k + 1] - v0) + eps<T>();
  p.t = (x - v0) / p.denom;
  return p;
}

// Non-uniform vertices, generic search (any vertex values).
template <typename T>
AILUT_HD AxisPos<T> locate(const T* v, int d, T x) {
  return axis_from_cell(v, clamp_cell(lower_bound_bisect(v, d, x), d), x);
}

// Uniform grid i / (d - 1): the cell is computed, then corrected by one step against
// the grid values so the result equals the search on that grid exactly.
template <typename T>
AILUT_HD AxisPos<T> locate_uniform(int d, T x) {
  const T scale = static_cast<T>(d - 1);
  T guess = ceil_t(x * scale) - T(1);
  // Clamp as a float first: NaN and huge values must never reach the int conversion.
  // NaN goes to the last cell, as the search on the grid would put it.
  if (guess != guess) guess = static_cast<T>(d - 2);
  if (!(guess >= T(0))) guess = T(0);
  if (guess > static_cast<T>(d - 2)) guess = static_cast<T>(d - 2);
  int k = static_cast<int>(guess);
  const T v_lo = static_cast<T>(k) / scale;
  const T v_hi = static_cast<T>(k + 1) / scale;
  if (x <= v_lo && k > 0) {
    k -= 1;
  } else if (x > v_hi && k < d - 2) {
    k += 1;
  }
  AxisPos<T> p;
  p.k = k;
  const T v0 = static_cast<T>(k) / scale;
  const T v1 = static_cast<T>(k + 1) / scale;
  p.denom = (v1 - v0) + eps<T>();
  p.t = (x - v0) / p.denom;
  return p;
}

// Offset of corner (j, i, h) = (b, g, r) steps from the cell's base corner.
AILUT_HD int64_t corner_offset(int corner, int64_t d) {
  return ((corner >> 2) & 1) * d * d + ((corner >> 1) & 1) * d + (corner & 1);
}

// Flat index of the cell's base corner (k_b, k_g, k_r) in one [D][D][D] channel.
template <typename T>
AILUT_HD int64_t base_index(const AxisPos<T>& r, const AxisPos<T>& g, const AxisPos<T>& b,
                            int64_t d) {
  return (static_cast<int64_t>(b.k) * d + g.k) * d + r.k;
}

// The 8 trilinear weights, corner bit 0 = red step, bit 1 = green, bit 2 = blue.
template <typename T>
AILUT_HD void corner_weights(T tr, T tg, T tb, T w[8]) {
  const T wr[2] = {T(1) - tr, tr};
  const T wg[2] = {T(1) - tg, tg};
  const T wb[2] = {T(1) - tb, tb};
  AILUT_UNROLL
  for (int c = 0; c < 8; ++c) w[c] = wr[c & 1] * wg[(c >> 1) & 1] * wb[(c >> 2) & 1];
}

// Forward for one pixel: out[c] = sum_corners w * lut[c][corner].
template <typename T>
AILUT_HD void blend(const T* lut, int64_t d, const AxisPos<T>& r, const AxisPos<T>& g,
                    const AxisPos<T>& b, T out[3]) {
  const int64_t d3 = d * d * d;
  const int64_t base = base_index(r, g, b, d);
  T w[8];
  corner_weights(r.t, g.t, b.t, w);
  AILUT_UNROLL
  for (int c = 0; c < 3; ++c) {
    const T* l = lut + c * d3 + base;
    T acc = T(0);
    AILUT_UNROLL
    for (int k = 0; k < 8; ++k) acc += w[k] * l[corner_offset(k, d)];
    out[c] = acc;
  }
}

// Backward for one pixel. Given the output cotangent g_out[3], returns the corner
// weights (for the LUT scatter: d lut[c][corner] += g_out[c] * w[corner]) and
// G[axis] = sum_c g_out[c] * d out_c / d t_axis for axes R, G, B.
template <typename T>
AILUT_HD void pixel_backward(const T* lut, int64_t d, const AxisPos<T>& r, const AxisPos<T>& g,
                             const AxisPos<T>& b, const T g_out[3], T w[8], T G[3]) {
  const int64_t d3 = d * d * d;
  const int64_t base = base_index(r, g, b, d);
  corner_weights(r.t, g.t, b.t, w);
  const T wr[2] = {T(1) - r.t, r.t};
  const T wg[2] = {T(1) - g.t, g.t};
  const T wb[2] = {T(1) - b.t, b.t};
  G[0] = G[1] = G[2] = T(0);
  AILUT_UNROLL
  for (int c = 0; c < 3; ++c) {
    const T* l = lut + c * d3 + base;
    T v[8];
    AILUT_UNROLL
    for (int k = 0; k < 8; ++k) v[k] = l[corner_offset(k, d)];
    T dr = T(0), dg = T(0), db = T(0);
    AILUT_UNROLL
    for (int k = 0; k < 8; k += 2) {  // red pairs: corners k (h=0) and k+1 (h=1)
      dr += wg[(k >> 1) & 1] * wb[(k >> 2) & 1] * (v[k + 1] - v[k]);
    }
    AILUT_UNROLL
    for (int k = 0; k < 8; ++k) {
      if ((k >> 1) & 1) continue;  // green pairs: corners k and k+2
      dg += wr[k & 1] * wb[(k >> 2) & 1] * (v[k + 2] - v[k]);
    }
    AILUT_UNROLL
    for (int k = 0; k < 4; ++k) {  // blue pairs: corners k and k+4
      db += wr[k & 1] * wg[(k >> 1) & 1] * (v[k + 4] - v[k]);
    }
    G[0] += g_out[c] * dr;
    G[1] += g_out[c] * dg;
    G[2] += g_out[c] * db;
  }
}

// Gradients of one channel's position with respect to the pixel value and to the two
// vertices of its cell, from G = d loss / d t.
template <typename T>
// One division, then products: the three quotients differ from the reference's by a
// rounding of 1/denom, well inside the gradient tolerances, and divisions dominated the
// backward's per-pixel cost.
AILUT_HD void axis_grads(const AxisPos<T>& p, T G, T* d_x, T* d_v0, T* d_v1) {
  const T g = G / p.denom;
  *d_x = g;
  *d_v0 = -g * (T(1) - p.t);
  *d_v1 = -g * p.t;
}

}  // namespace ailut
