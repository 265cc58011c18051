// The CPU forward and backward vectorised across pixels: 8 float32 pixels per step with AVX2
// gathers, compiled for AVX2 only inside this header (target attribute) and chosen at
// run time (simd_path() in ailut_cpu.cc), so the module still runs on CPUs without it.
//
// Every lane performs the operations of the scalar path (ailut_math.h and the views of
// ailut_cpu.cc) in the same order, each one correctly rounded in IEEE float32: results
// are bit-identical to the scalar path's. The target is "avx2" without "fma" on
// purpose: no multiply-add can be contracted into an FMA here, just as in the scalar
// code built for baseline x86-64 (tests/test_simd.py checks the identity).
//
// Bounds: every gather index is a cell index already clamped to [0, D-2] (plus a corner
// offset), a bucket index in [0, kBuckets) of an in-range lane (0 for the others), a
// search index < padded, or a scan index masked to lb < D; never out of range whatever
// the pixel values. The backward's scatters use the same clamped cells: LUT partial
// entries base + corner offset and vertex entries k, k + 1 <= D - 1. Indices are int32:
// callers use this path only when 4 * D^3 fits.
#pragma once

#include <cstdint>

#include "ailut_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AILUT_HAVE_AVX2 1
#include <immintrin.h>

#define AILUT_AVX2 __attribute__((target("avx2"), always_inline)) inline
#define AILUT_AVX2_ENTRY __attribute__((target("avx2")))

namespace ailut {
namespace avx2 {

struct Pos8 {
  __m256i k;     // cell index per lane, in [0, D-2]
  __m256 t;      // fraction inside the cell
  __m256 denom;  // v[k+1] - v[k] + eps (the backward's d t / d x = 1 / denom)
};

AILUT_AVX2 __m256 set_f(float x) { return _mm256_set1_ps(x); }
AILUT_AVX2 __m256i set_i(int x) { return _mm256_set1_epi32(x); }

// axis_from_cell for 8 lanes: v0 = row[k], denom = (row[k+1] - v0) + eps, t = (x - v0) / denom.
AILUT_AVX2 Pos8 from_cell(const float* row, __m256i k, __m256 x) {
  const __m256 v0 = _mm256_i32gather_ps(row, k, 4);
  const __m256 v1 = _mm256_i32gather_ps(row + 1, k, 4);
  const __m256 denom = _mm256_add_ps(_mm256_sub_ps(v1, v0), set_f(eps<float>()));
  return {k, _mm256_div_ps(_mm256_sub_ps(x, v0), denom), denom};
}

// clamp_cell: k = lb - 1, then k < 0 -> 0, then k > d - 2 -> d - 2.
AILUT_AVX2 __m256i clamp_cell8(__m256i lb, int d) {
  return _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(lb, set_i(1)), set_i(0)), set_i(d - 2));
}

// locate_uniform for 8 lanes.
AILUT_AVX2 Pos8 locate_uniform8(int d, __m256 x) {
  const __m256 scale = set_f(static_cast<float>(d - 1));
  const __m256 top = set_f(static_cast<float>(d - 2));
  const __m256 zero = _mm256_setzero_ps();
  __m256 guess = _mm256_sub_ps(
      _mm256_round_ps(_mm256_mul_ps(x, scale), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC),
      set_f(1.0f));
  guess = _mm256_blendv_ps(guess, top, _mm256_cmp_ps(guess, guess, _CMP_UNORD_Q));
  guess = _mm256_blendv_ps(zero, guess, _mm256_cmp_ps(guess, zero, _CMP_GE_OQ));
  guess = _mm256_blendv_ps(guess, top, _mm256_cmp_ps(guess, top, _CMP_GT_OQ));
  __m256i k = _mm256_cvttps_epi32(guess);
  const __m256i k1 = _mm256_add_epi32(k, set_i(1));
  const __m256 v_lo = _mm256_div_ps(_mm256_cvtepi32_ps(k), scale);
  const __m256 v_hi = _mm256_div_ps(_mm256_cvtepi32_ps(k1), scale);
  const __m256i dec = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x, v_lo, _CMP_LE_OQ)),
                                       _mm256_cmpgt_epi32(k, set_i(0)));
  const __m256i inc = _mm256_andnot_si256(
      dec, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x, v_hi, _CMP_GT_OQ)),
                            _mm256_cmpgt_epi32(set_i(d - 2), k)));
  k = _mm256_sub_epi32(_mm256_add_epi32(k, dec), inc);  // masks are -1: k - 1 / k + 1
  const __m256 v0 = _mm256_div_ps(_mm256_cvtepi32_ps(k), scale);
  const __m256 v1 = _mm256_div_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(k, set_i(1))), scale);
  const __m256 denom = _mm256_add_ps(_mm256_sub_ps(v1, v0), set_f(eps<float>()));
  return {k, _mm256_div_ps(_mm256_sub_ps(x, v0), denom), denom};
}

// SortedView for 8 lanes: in [0, 1) the bucket start and a forward scan (lanes advance
// until all have stopped), elsewhere (and NaN) the branch-free search on the padded row.
AILUT_AVX2 Pos8 locate_sorted8(const float* row, const float* padded_row, int padded,
                               const uint16_t* buckets, int n_buckets, int d, __m256 x) {
  const __m256 in = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ),
                                  _mm256_cmp_ps(x, set_f(1.0f), _CMP_LT_OQ));
  const int in_mask = _mm256_movemask_ps(in);
  __m256i lb = _mm256_setzero_si256();
  if (in_mask != 0) {
    // Lanes outside [0, 1) read bucket 0. A 32-bit gather at 2-byte steps reads one
    // uint16 past the entry: the bucket table carries one padding entry for that.
    const __m256i j = _mm256_and_si256(
        _mm256_cvttps_epi32(_mm256_mul_ps(x, set_f(static_cast<float>(n_buckets)))),
        _mm256_castps_si256(in));
    lb = _mm256_and_si256(_mm256_i32gather_epi32(reinterpret_cast<const int*>(buckets), j, 2),
                          set_i(0xFFFF));
    __m256i active = _mm256_and_si256(_mm256_castps_si256(in), _mm256_cmpgt_epi32(set_i(d), lb));
    while (!_mm256_testz_si256(active, active)) {
      const __m256i idx = _mm256_min_epi32(lb, set_i(d - 1));
      const __m256 v =
          _mm256_mask_i32gather_ps(_mm256_setzero_ps(), row, idx, _mm256_castsi256_ps(active), 4);
      const __m256i step =
          _mm256_and_si256(active, _mm256_castps_si256(_mm256_cmp_ps(v, x, _CMP_LT_OQ)));
      lb = _mm256_sub_epi32(lb, step);
      active = _mm256_and_si256(step, _mm256_cmpgt_epi32(set_i(d), lb));
    }
  }
  if (in_mask != 0xFF) {
    __m256i base = _mm256_setzero_si256();
    for (int step = padded >> 1; step > 0; step >>= 1) {
      const __m256 v = _mm256_i32gather_ps(padded_row, _mm256_add_epi32(base, set_i(step - 1)), 4);
      base = _mm256_add_epi32(
          base,
          _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(v, x, _CMP_NGE_UQ)), set_i(step)));
    }
    lb = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(base), _mm256_castsi256_ps(lb), in));
  }
  return from_cell(row, clamp_cell8(lb, d), x);
}

// The trilinear blend of 8 pixels: corner_weights() then, per channel,
// acc = 0, acc += w[k] * lut[corner k] for k = 0..7, as blend() does. The LUT entry of
// channel c at flat cell index j is lut[c * chan_stride + j * entry_stride] (plain
// [3][D^3] layout: 1 and D^3; packed [D^3][4] layout: 4 and 1).
AILUT_AVX2 void blend8(const float* lut, int entry_stride, int64_t chan_stride, const int off[8],
                       int d, const Pos8& r, const Pos8& g, const Pos8& b, __m256 out[3]) {
  const __m256i base = _mm256_mullo_epi32(
      _mm256_add_epi32(
          _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(b.k, set_i(d)), g.k), set_i(d)),
          r.k),
      set_i(entry_stride));
  const __m256 one = set_f(1.0f);
  const __m256 wr[2] = {_mm256_sub_ps(one, r.t), r.t};
  const __m256 wg[2] = {_mm256_sub_ps(one, g.t), g.t};
  const __m256 wb[2] = {_mm256_sub_ps(one, b.t), b.t};
  __m256 w[8];
  for (int c = 0; c < 8; ++c) {
    w[c] = _mm256_mul_ps(_mm256_mul_ps(wr[c & 1], wg[(c >> 1) & 1]), wb[(c >> 2) & 1]);
  }
  __m256i idx[8];
  for (int k = 0; k < 8; ++k) idx[k] = _mm256_add_epi32(base, set_i(off[k]));
  for (int c = 0; c < 3; ++c) {
    const float* l = lut + c * chan_stride;
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < 8; ++k) {
      acc = _mm256_add_ps(acc, _mm256_mul_ps(w[k], _mm256_i32gather_ps(l, idx[k], 4)));
    }
    out[c] = acc;
  }
}

// blend8 for the packed [D^3][4] LUT (entry_stride 4, chan_stride 1), writing the
// interleaved output: per pixel, one 4-lane load per corner ([r, g, b, 0]) times the
// corner's weight, summed in corner order, exactly blend()'s sums per channel. Cheaper
// than 24 gathers. Pixel j's 4-lane store spills into pixel j+1's red, which pixel j+1
// then writes; the last pixel stores its 3 values alone, never past the 8 pixels.
AILUT_AVX2 void blend8_packed_store(const float* lut4, const int off[8], int d, const Pos8& r,
                                    const Pos8& g, const Pos8& b, float* out) {
  const __m256i base = _mm256_slli_epi32(
      _mm256_add_epi32(
          _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(b.k, set_i(d)), g.k), set_i(d)),
          r.k),
      2);
  const __m256 one = set_f(1.0f);
  const __m256 wr[2] = {_mm256_sub_ps(one, r.t), r.t};
  const __m256 wg[2] = {_mm256_sub_ps(one, g.t), g.t};
  const __m256 wb[2] = {_mm256_sub_ps(one, b.t), b.t};
  alignas(32) float w[8][8];
  alignas(32) int idx[8];
  for (int c = 0; c < 8; ++c) {
    _mm256_store_ps(w[c],
                    _mm256_mul_ps(_mm256_mul_ps(wr[c & 1], wg[(c >> 1) & 1]), wb[(c >> 2) & 1]));
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(idx), base);
  for (int j = 0; j < 8; ++j) {
    const float* l = lut4 + idx[j];
    __m128 acc = _mm_setzero_ps();
    for (int k = 0; k < 8; ++k) {
      acc = _mm_add_ps(acc, _mm_mul_ps(_mm_broadcast_ss(&w[k][j]), _mm_loadu_ps(l + off[k])));
    }
    if (j < 7) {
      _mm_storeu_ps(out + 3 * j, acc);
    } else {
      alignas(16) float last[4];
      _mm_store_ps(last, acc);
      out[3 * j] = last[0];
      out[3 * j + 1] = last[1];
      out[3 * j + 2] = last[2];
    }
  }
}

// Loads 8 interleaved RGB pixels as three channel vectors; stores them back.
AILUT_AVX2 void load_rgb8(const float* px, __m256 x[3]) {
  alignas(32) float ch[3][8];
  for (int j = 0; j < 8; ++j) {
    ch[0][j] = px[3 * j];
    ch[1][j] = px[3 * j + 1];
    ch[2][j] = px[3 * j + 2];
  }
  for (int c = 0; c < 3; ++c) x[c] = _mm256_load_ps(ch[c]);
}

AILUT_AVX2 void store_rgb8(float* px, const __m256 y[3]) {
  alignas(32) float ch[3][8];
  for (int c = 0; c < 3; ++c) _mm256_store_ps(ch[c], y[c]);
  for (int j = 0; j < 8; ++j) {
    px[3 * j] = ch[0][j];
    px[3 * j + 1] = ch[1][j];
    px[3 * j + 2] = ch[2][j];
  }
}

// Where each view's cells come from, for 8 lanes of channel c.
struct Uniform8 {
  int d;
  AILUT_AVX2 Pos8 operator()(int, __m256 x) const { return locate_uniform8(d, x); }
};

struct Sorted8 {
  const float* v;
  const float* padded_rows;
  const uint16_t* buckets;
  int n_buckets;
  int d;
  int padded;
  AILUT_AVX2 Pos8 operator()(int c, __m256 x) const {
    return locate_sorted8(v + c * d, padded_rows + c * padded, padded, buckets + c * n_buckets,
                          n_buckets, d, x);
  }
};

// Forward of pixels [begin, begin + 8 * n): returns the number of pixels done.
template <typename Locate>
AILUT_AVX2_ENTRY int64_t forward8(const float* __restrict img, float* __restrict out,
                                  const float* __restrict lut, int entry_stride,
                                  int64_t chan_stride, int d, const Locate locate, int64_t begin,
                                  int64_t end) {
  int off[8];
  for (int k = 0; k < 8; ++k) {
    off[k] = entry_stride * static_cast<int>(corner_offset(k, d));
  }
  const int64_t n = (end - begin) / 8;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t i0 = begin + 8 * s;
    __m256 x[3], y[3];
    load_rgb8(img + 3 * i0, x);
    const Pos8 r = locate(0, x[0]);
    const Pos8 g = locate(1, x[1]);
    const Pos8 b = locate(2, x[2]);
    if (entry_stride == 4) {
      blend8_packed_store(lut, off, d, r, g, b, out + 3 * i0);
    } else {
      blend8(lut, entry_stride, chan_stride, off, d, r, g, b, y);
      store_rgb8(out + 3 * i0, y);
    }
  }
  return 8 * n;
}

// Backward of pixels [begin, begin + 8 * n) into one slice's float64 partial sums (see
// backward_all in ailut_cpu.cc); returns the number of pixels done. Each lane performs
// pixel_backward() and axis_grads() in their order: the corner weights; per channel c
// the red, green and blue differences of the 8 corner values, weighted and summed from
// zero in corner order; G[axis] summed over c = 0, 1, 2 from zero; then g = G / denom,
// d x = g, d v0 = -g * (1 - t), d v1 = -g * t. The scatters into the partials stay one
// pixel after another in pixel order, each value the float32 product (or gradient)
// converted to float64, so every partial receives the same additions in the same order
// as on the scalar path: the gradients are bit-identical to it. The partials use the
// LUT's layout: entry (c, j) at c * chan_stride + j * entry_stride.
template <bool kVertexGrad, typename Locate>
AILUT_AVX2_ENTRY int64_t backward8(const float* __restrict g_out, const float* __restrict img,
                                   const float* __restrict lut, int entry_stride,
                                   int64_t chan_stride, int d, const Locate locate, int64_t begin,
                                   int64_t end, float* __restrict d_img, double* __restrict d_lut,
                                   double* __restrict d_vert) {
  int off[8];
  for (int k = 0; k < 8; ++k) {
    off[k] = entry_stride * static_cast<int>(corner_offset(k, d));
  }
  const __m256 one = set_f(1.0f);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 sign = set_f(-0.0f);
  const int64_t n = (end - begin) / 8;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t i0 = begin + 8 * s;
    __m256 x[3], go[3];
    load_rgb8(img + 3 * i0, x);
    load_rgb8(g_out + 3 * i0, go);
    const Pos8 pos[3] = {locate(0, x[0]), locate(1, x[1]), locate(2, x[2])};
    const __m256i base = _mm256_mullo_epi32(
        _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(pos[2].k, set_i(d)), pos[1].k),
                               set_i(d)),
            pos[0].k),
        set_i(entry_stride));
    const __m256 wr[2] = {_mm256_sub_ps(one, pos[0].t), pos[0].t};
    const __m256 wg[2] = {_mm256_sub_ps(one, pos[1].t), pos[1].t};
    const __m256 wb[2] = {_mm256_sub_ps(one, pos[2].t), pos[2].t};
    alignas(32) float w[8][8];
    __m256i idx[8];
    for (int k = 0; k < 8; ++k) {
      _mm256_store_ps(w[k],
                      _mm256_mul_ps(_mm256_mul_ps(wr[k & 1], wg[(k >> 1) & 1]), wb[(k >> 2) & 1]));
      idx[k] = _mm256_add_epi32(base, set_i(off[k]));
    }
    __m256 G[3] = {zero, zero, zero};
    for (int c = 0; c < 3; ++c) {
      const float* l = lut + c * chan_stride;
      __m256 v[8];
      for (int k = 0; k < 8; ++k) v[k] = _mm256_i32gather_ps(l, idx[k], 4);
      __m256 dr = zero, dg = zero, db = zero;
      for (int k = 0; k < 8; k += 2) {
        const __m256 wt = _mm256_mul_ps(wg[(k >> 1) & 1], wb[(k >> 2) & 1]);
        dr = _mm256_add_ps(dr, _mm256_mul_ps(wt, _mm256_sub_ps(v[k + 1], v[k])));
      }
      for (int k = 0; k < 8; ++k) {
        if ((k >> 1) & 1) continue;
        const __m256 wt = _mm256_mul_ps(wr[k & 1], wb[(k >> 2) & 1]);
        dg = _mm256_add_ps(dg, _mm256_mul_ps(wt, _mm256_sub_ps(v[k + 2], v[k])));
      }
      for (int k = 0; k < 4; ++k) {
        const __m256 wt = _mm256_mul_ps(wr[k & 1], wg[(k >> 1) & 1]);
        db = _mm256_add_ps(db, _mm256_mul_ps(wt, _mm256_sub_ps(v[k + 4], v[k])));
      }
      G[0] = _mm256_add_ps(G[0], _mm256_mul_ps(go[c], dr));
      G[1] = _mm256_add_ps(G[1], _mm256_mul_ps(go[c], dg));
      G[2] = _mm256_add_ps(G[2], _mm256_mul_ps(go[c], db));
    }
    __m256 dx[3];
    alignas(32) float dv0[3][8], dv1[3][8], gc[3][8];
    alignas(32) int kc[3][8], at[8];
    for (int c = 0; c < 3; ++c) {
      dx[c] = _mm256_div_ps(G[c], pos[c].denom);
      const __m256 neg = _mm256_xor_ps(dx[c], sign);
      _mm256_store_ps(dv0[c], _mm256_mul_ps(neg, _mm256_sub_ps(one, pos[c].t)));
      _mm256_store_ps(dv1[c], _mm256_mul_ps(neg, pos[c].t));
      _mm256_store_si256(reinterpret_cast<__m256i*>(kc[c]), pos[c].k);
      _mm256_store_ps(gc[c], go[c]);
    }
    store_rgb8(d_img + 3 * i0, dx);
    _mm256_store_si256(reinterpret_cast<__m256i*>(at), base);
    for (int j = 0; j < 8; ++j) {
      if (entry_stride == 4) {
        const __m128 g4 = _mm_setr_ps(gc[0][j], gc[1][j], gc[2][j], 0.0f);
        double* p = d_lut + at[j];
        for (int k = 0; k < 8; ++k) {
          double* dst = p + off[k];
          const __m256d add = _mm256_cvtps_pd(_mm_mul_ps(g4, _mm_set1_ps(w[k][j])));
          _mm256_storeu_pd(dst, _mm256_add_pd(_mm256_loadu_pd(dst), add));
        }
      } else {
        for (int c = 0; c < 3; ++c) {
          double* p = d_lut + c * chan_stride + at[j];
          for (int k = 0; k < 8; ++k) p[off[k]] += static_cast<double>(gc[c][j] * w[k][j]);
        }
      }
      if (kVertexGrad) {
        for (int c = 0; c < 3; ++c) {
          double* dv = d_vert + c * d + kc[c][j];
          dv[0] += static_cast<double>(dv0[c][j]);
          dv[1] += static_cast<double>(dv1[c][j]);
        }
      }
    }
  }
  return 8 * n;
}

}  // namespace avx2
}  // namespace ailut

#endif
