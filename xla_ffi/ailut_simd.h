// The CPU forward and backward vectorised across pixels: 8 float32 pixels per step with
// AVX2, 16 with AVX-512, chosen at run time (simd_path() in ailut_cpu.cc) so the module,
// built for baseline x86-64, still runs on CPUs without them. The kernels are written
// once (ailut_simd_kernels.inc) and compiled for each instruction set inside its own
// namespace, with that set's lane operations and target attribute.
//
// Every lane performs the operations of the scalar path (ailut_math.h and the views of
// ailut_cpu.cc) in the same order, each one correctly rounded in IEEE float32: results
// are bit-identical to the scalar path's. AVX-512 implies FMA, so the module is compiled
// with -ffp-contract=off (CMakeLists.txt): no multiply-add is ever fused, here or in the
// scalar code (tests/test_simd.py checks the identity for both instruction sets).
//
// Bounds: every gather index is a cell index already clamped to [0, D-2] (plus a corner
// offset), a bucket index in [0, kBuckets) of an in-range lane (0 for the others), a
// search index < padded, or a scan index clamped to D - 1 (and masked to lb < D); never
// out of range whatever the pixel values. The backward's scatters use the same clamped
// cells: LUT partial entries base + corner offset and vertex entries k, k + 1 <= D - 1.
// Indices are int32: callers use these paths only when 4 * D^3 fits.
#pragma once

#include <cstdint>

#include "ailut_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AILUT_HAVE_X86_SIMD 1
// GCC 12's AVX-512 intrinsics start some results from an undefined vector and warn about
// it where they are inlined (GCC bug 105593, fixed in 13): nothing here is uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace ailut {

// ---------------------------------------------------------------- AVX2: 8 lanes
namespace avx2 {

#define AILUT_SIMD_FN __attribute__((target("avx2"), always_inline)) inline
#define AILUT_SIMD_ENTRY __attribute__((target("avx2")))

constexpr int kLanes = 8;
using VF = __m256;
using VI = __m256i;
using VM = __m256i;  // a lane is all ones where true

AILUT_SIMD_FN VF fset(float x) { return _mm256_set1_ps(x); }
AILUT_SIMD_FN VI iset(int x) { return _mm256_set1_epi32(x); }
AILUT_SIMD_FN VF fzero() { return _mm256_setzero_ps(); }
AILUT_SIMD_FN VF add(VF a, VF b) { return _mm256_add_ps(a, b); }
AILUT_SIMD_FN VF sub(VF a, VF b) { return _mm256_sub_ps(a, b); }
AILUT_SIMD_FN VF mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
AILUT_SIMD_FN VF div(VF a, VF b) { return _mm256_div_ps(a, b); }
AILUT_SIMD_FN VF neg(VF a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
AILUT_SIMD_FN VF ceil(VF a) {
  return _mm256_round_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
}
AILUT_SIMD_FN VI to_int(VF a) { return _mm256_cvttps_epi32(a); }
AILUT_SIMD_FN VF to_float(VI a) { return _mm256_cvtepi32_ps(a); }
AILUT_SIMD_FN VI iadd(VI a, VI b) { return _mm256_add_epi32(a, b); }
AILUT_SIMD_FN VI isub(VI a, VI b) { return _mm256_sub_epi32(a, b); }
AILUT_SIMD_FN VI imul(VI a, VI b) { return _mm256_mullo_epi32(a, b); }
AILUT_SIMD_FN VI imin(VI a, VI b) { return _mm256_min_epi32(a, b); }
AILUT_SIMD_FN VI imax(VI a, VI b) { return _mm256_max_epi32(a, b); }
AILUT_SIMD_FN VI iand(VI a, VI b) { return _mm256_and_si256(a, b); }
AILUT_SIMD_FN VM cmp_lt(VF a, VF b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
AILUT_SIMD_FN VM cmp_le(VF a, VF b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_LE_OQ)); }
AILUT_SIMD_FN VM cmp_gt(VF a, VF b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
AILUT_SIMD_FN VM cmp_ge(VF a, VF b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GE_OQ)); }
AILUT_SIMD_FN VM cmp_nge(VF a, VF b) {  // !(a >= b), true for NaN
  return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_NGE_UQ));
}
AILUT_SIMD_FN VM is_nan(VF a) { return _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)); }
AILUT_SIMD_FN VM icmp_gt(VI a, VI b) { return _mm256_cmpgt_epi32(a, b); }
AILUT_SIMD_FN VM icmp_eq(VI a, VI b) { return _mm256_cmpeq_epi32(a, b); }
AILUT_SIMD_FN VM mand(VM a, VM b) { return _mm256_and_si256(a, b); }
AILUT_SIMD_FN VM mandnot(VM a, VM b) { return _mm256_andnot_si256(a, b); }  // ~a & b
AILUT_SIMD_FN bool any(VM m) { return !_mm256_testz_si256(m, m); }
AILUT_SIMD_FN bool all(VM m) { return _mm256_movemask_ps(_mm256_castsi256_ps(m)) == 0xFF; }
AILUT_SIMD_FN VF fselect(VM m, VF a, VF b) {  // m ? b : a
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(m));
}
AILUT_SIMD_FN VI iselect(VM m, VI a, VI b) {  // m ? b : a
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), _mm256_castsi256_ps(m)));
}
AILUT_SIMD_FN VI iadd_if(VM m, VI a, int inc) { return iadd(a, iand(m, iset(inc))); }
AILUT_SIMD_FN VI izero_unless(VM m, VI a) { return iand(m, a); }
AILUT_SIMD_FN VF gather(const float* base, VI idx) { return _mm256_i32gather_ps(base, idx, 4); }
AILUT_SIMD_FN VF gather_masked(const float* base, VI idx, VM m) {  // 0 where !m
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, _mm256_castsi256_ps(m), 4);
}
AILUT_SIMD_FN VI gather_u16(const uint16_t* base, VI idx) {
  return iand(_mm256_i32gather_epi32(reinterpret_cast<const int*>(base), idx, 2), iset(0xFFFF));
}
AILUT_SIMD_FN VF fload(const float* p) { return _mm256_load_ps(p); }
AILUT_SIMD_FN void fstore(float* p, VF v) { _mm256_store_ps(p, v); }
AILUT_SIMD_FN void istore(int* p, VI v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }

// 8 interleaved RGB pixels (24 floats) to three channel vectors and back: each of the three
// vectors loaded holds some lanes of every channel; blends pick them, a permutation puts
// them in pixel order (the inverse for the store). Data movement only.
AILUT_SIMD_FN void load_rgb(const float* px, VF x[3]) {
  const VF a = _mm256_loadu_ps(px), b = _mm256_loadu_ps(px + 8), c = _mm256_loadu_ps(px + 16);
  // Lane l of a / b / c holds element 3 j + ch: red at a{0,3,6} b{1,4,7} c{2,5}, ...
  const VF r = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x92), c, 0x24);   // r0 r3 r6 r1 r4 r7 r2 r5
  const VF g = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x24), c, 0x49);   // g5 g0 g3 g6 g1 g4 g7 g2
  const VF bl = _mm256_blend_ps(_mm256_blend_ps(a, b, 0x49), c, 0x92);  // b2 b5 b0 b3 b6 b1 b4 b7
  x[0] = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
  x[1] = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6));
  x[2] = _mm256_permutevar8x32_ps(bl, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
}

AILUT_SIMD_FN void store_rgb(float* px, const VF y[3]) {
  const VF r = _mm256_permutevar8x32_ps(y[0], _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
  const VF g = _mm256_permutevar8x32_ps(y[1], _mm256_setr_epi32(5, 0, 3, 6, 1, 4, 7, 2));
  const VF b = _mm256_permutevar8x32_ps(y[2], _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
  _mm256_storeu_ps(px, _mm256_blend_ps(_mm256_blend_ps(r, g, 0x92), b, 0x24));
  _mm256_storeu_ps(px + 8, _mm256_blend_ps(_mm256_blend_ps(r, g, 0x24), b, 0x49));
  _mm256_storeu_ps(px + 16, _mm256_blend_ps(_mm256_blend_ps(r, g, 0x49), b, 0x92));
}

// The blend for the packed [D^3][4] layout, writing the interleaved output. Two pixels
// per vector: for each corner, each pixel's 4-lane entry [r, g, b, 0] times its weight
// (spread over its 4 lanes), summed from zero in corner order: exactly blend()'s sums
// per channel, and cheaper than 24 gathers. Pixel j's 4-lane store spills into pixel
// j+1's red, which pixel j+1 then writes; the last pixel stores its 3 values alone,
// never past the step's pixels.
AILUT_SIMD_FN void blend_packed_store(const float* lut4, const int off[8], VI base, const VF w[8],
                                      float* out) {
  alignas(64) int at[kLanes];
  istore(at, base);
  for (int q = 0; q < kLanes; q += 2) {
    const VI spread = _mm256_setr_epi32(q, q, q, q, q + 1, q + 1, q + 1, q + 1);
    VF acc = fzero();
    for (int k = 0; k < 8; ++k) {
      const float* l = lut4 + off[k];
      const VF v = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(l + at[q])),
                                        _mm_loadu_ps(l + at[q + 1]), 1);
      acc = add(acc, mul(_mm256_permutevar8x32_ps(w[k], spread), v));
    }
    _mm_storeu_ps(out + 3 * q, _mm256_castps256_ps128(acc));
    const __m128 hi = _mm256_extractf128_ps(acc, 1);
    if (q + 2 < kLanes) {
      _mm_storeu_ps(out + 3 * (q + 1), hi);
    } else {
      alignas(16) float last[4];
      _mm_store_ps(last, hi);
      out[3 * (q + 1)] = last[0];
      out[3 * (q + 1) + 1] = last[1];
      out[3 * (q + 1) + 2] = last[2];
    }
  }
}

#include "ailut_simd_kernels.inc"

struct Sorted {
  const float* v;
  const float* padded_rows;
  const uint16_t* buckets;
  int n_buckets;
  int has_vertex;  // the flag bit of a bucket entry (a power of two; below it the bound)
  int d;
  int padded;
  AILUT_SIMD_FN Pos operator()(int c, VF x) const {
    return locate_sorted(RowInMemory{v + c * d}, padded_rows + c * padded, padded,
                         buckets + c * n_buckets, n_buckets, has_vertex, d, x);
  }
};

#undef AILUT_SIMD_FN
#undef AILUT_SIMD_ENTRY

}  // namespace avx2

// ---------------------------------------------------------------- AVX-512: 16 lanes
namespace avx512 {

#define AILUT_SIMD_FN __attribute__((target("avx512f"), always_inline)) inline
#define AILUT_SIMD_ENTRY __attribute__((target("avx512f")))

constexpr int kLanes = 16;
using VF = __m512;
using VI = __m512i;
using VM = __mmask16;  // one bit per lane

AILUT_SIMD_FN VF fset(float x) { return _mm512_set1_ps(x); }
AILUT_SIMD_FN VI iset(int x) { return _mm512_set1_epi32(x); }
AILUT_SIMD_FN VF fzero() { return _mm512_setzero_ps(); }
AILUT_SIMD_FN VF add(VF a, VF b) { return _mm512_add_ps(a, b); }
AILUT_SIMD_FN VF sub(VF a, VF b) { return _mm512_sub_ps(a, b); }
AILUT_SIMD_FN VF mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
AILUT_SIMD_FN VF div(VF a, VF b) { return _mm512_div_ps(a, b); }
AILUT_SIMD_FN VF neg(VF a) {  // integer xor: the float one needs AVX512DQ
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}
AILUT_SIMD_FN VF ceil(VF a) {
  return _mm512_roundscale_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
}
AILUT_SIMD_FN VI to_int(VF a) { return _mm512_cvttps_epi32(a); }
AILUT_SIMD_FN VF to_float(VI a) { return _mm512_cvtepi32_ps(a); }
AILUT_SIMD_FN VI iadd(VI a, VI b) { return _mm512_add_epi32(a, b); }
AILUT_SIMD_FN VI isub(VI a, VI b) { return _mm512_sub_epi32(a, b); }
AILUT_SIMD_FN VI imul(VI a, VI b) { return _mm512_mullo_epi32(a, b); }
AILUT_SIMD_FN VI imin(VI a, VI b) { return _mm512_min_epi32(a, b); }
AILUT_SIMD_FN VI imax(VI a, VI b) { return _mm512_max_epi32(a, b); }
AILUT_SIMD_FN VI iand(VI a, VI b) { return _mm512_and_si512(a, b); }
AILUT_SIMD_FN VM cmp_lt(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
AILUT_SIMD_FN VM cmp_le(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
AILUT_SIMD_FN VM cmp_gt(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
AILUT_SIMD_FN VM cmp_ge(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
AILUT_SIMD_FN VM cmp_nge(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_NGE_UQ); }
AILUT_SIMD_FN VM is_nan(VF a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
AILUT_SIMD_FN VM icmp_gt(VI a, VI b) { return _mm512_cmpgt_epi32_mask(a, b); }
AILUT_SIMD_FN VM icmp_eq(VI a, VI b) { return _mm512_cmpeq_epi32_mask(a, b); }
AILUT_SIMD_FN VM mand(VM a, VM b) { return static_cast<VM>(a & b); }
AILUT_SIMD_FN VM mandnot(VM a, VM b) { return static_cast<VM>(~a & b); }
AILUT_SIMD_FN bool any(VM m) { return m != 0; }
AILUT_SIMD_FN bool all(VM m) { return m == 0xFFFF; }
AILUT_SIMD_FN VF fselect(VM m, VF a, VF b) { return _mm512_mask_blend_ps(m, a, b); }
AILUT_SIMD_FN VI iselect(VM m, VI a, VI b) { return _mm512_mask_blend_epi32(m, a, b); }
AILUT_SIMD_FN VI iadd_if(VM m, VI a, int inc) { return _mm512_mask_add_epi32(a, m, a, iset(inc)); }
AILUT_SIMD_FN VI izero_unless(VM m, VI a) { return _mm512_maskz_mov_epi32(m, a); }
AILUT_SIMD_FN VF gather(const float* base, VI idx) { return _mm512_i32gather_ps(idx, base, 4); }
AILUT_SIMD_FN VF gather_masked(const float* base, VI idx, VM m) {  // 0 where !m
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4);
}
AILUT_SIMD_FN VI gather_u16(const uint16_t* base, VI idx) {
  return iand(_mm512_i32gather_epi32(idx, base, 2), iset(0xFFFF));
}
AILUT_SIMD_FN VF fload(const float* p) { return _mm512_load_ps(p); }
AILUT_SIMD_FN void fstore(float* p, VF v) { _mm512_store_ps(p, v); }
AILUT_SIMD_FN void istore(int* p, VI v) { _mm512_store_si512(p, v); }

// 16 interleaved RGB pixels (48 floats) to three channel vectors and back, with two-source
// permutations: the first from the first two vectors loaded, the second adds the third's.
// Data movement only.
AILUT_SIMD_FN void load_rgb(const float* px, VF x[3]) {
  alignas(64) static const int kIdx[3][2][16] = {
      {{0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0, 0, 0, 0, 0},
       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 20, 23, 26, 29}},
      {{1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 0, 0, 0, 0, 0},
       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 18, 21, 24, 27, 30}},
      {{2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0, 0, 0, 0, 0, 0},
       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 19, 22, 25, 28, 31}}};
  const VF a = _mm512_loadu_ps(px), b = _mm512_loadu_ps(px + 16), c = _mm512_loadu_ps(px + 32);
  for (int ch = 0; ch < 3; ++ch) {
    const VF ab = _mm512_permutex2var_ps(a, _mm512_load_si512(kIdx[ch][0]), b);
    x[ch] = _mm512_permutex2var_ps(ab, _mm512_load_si512(kIdx[ch][1]), c);
  }
}

AILUT_SIMD_FN void store_rgb(float* px, const VF y[3]) {
  alignas(64) static const int kIdx[3][2][16] = {
      {{0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5},
       {0, 1, 16, 3, 4, 17, 6, 7, 18, 9, 10, 19, 12, 13, 20, 15}},
      {{21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26},
       {0, 21, 2, 3, 22, 5, 6, 23, 8, 9, 24, 11, 12, 25, 14, 15}},
      {{0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0},
       {26, 1, 2, 27, 4, 5, 28, 7, 8, 29, 10, 11, 30, 13, 14, 31}}};
  for (int o = 0; o < 3; ++o) {
    const VF rg = _mm512_permutex2var_ps(y[0], _mm512_load_si512(kIdx[o][0]), y[1]);
    _mm512_storeu_ps(px + 16 * o, _mm512_permutex2var_ps(rg, _mm512_load_si512(kIdx[o][1]), y[2]));
  }
}

// The blend for the packed [D^3][4] layout (see avx2::blend_packed_store), four pixels
// per vector.
AILUT_SIMD_FN void blend_packed_store(const float* lut4, const int off[8], VI base, const VF w[8],
                                      float* out) {
  alignas(64) int at[kLanes];
  istore(at, base);
  for (int q = 0; q < kLanes; q += 4) {
    const VI spread = _mm512_setr_epi32(q, q, q, q, q + 1, q + 1, q + 1, q + 1, q + 2, q + 2, q + 2,
                                        q + 2, q + 3, q + 3, q + 3, q + 3);
    VF acc = fzero();
    for (int k = 0; k < 8; ++k) {
      const float* l = lut4 + off[k];
      VF v = _mm512_castps128_ps512(_mm_loadu_ps(l + at[q]));
      v = _mm512_insertf32x4(v, _mm_loadu_ps(l + at[q + 1]), 1);
      v = _mm512_insertf32x4(v, _mm_loadu_ps(l + at[q + 2]), 2);
      v = _mm512_insertf32x4(v, _mm_loadu_ps(l + at[q + 3]), 3);
      acc = add(acc, mul(_mm512_permutexvar_ps(spread, w[k]), v));
    }
    _mm_storeu_ps(out + 3 * q, _mm512_castps512_ps128(acc));
    _mm_storeu_ps(out + 3 * (q + 1), _mm512_extractf32x4_ps(acc, 1));
    _mm_storeu_ps(out + 3 * (q + 2), _mm512_extractf32x4_ps(acc, 2));
    const __m128 top = _mm512_extractf32x4_ps(acc, 3);
    if (q + 4 < kLanes) {
      _mm_storeu_ps(out + 3 * (q + 3), top);
    } else {
      alignas(16) float last[4];
      _mm_store_ps(last, top);
      out[3 * (q + 3)] = last[0];
      out[3 * (q + 3) + 1] = last[1];
      out[3 * (q + 3) + 2] = last[2];
    }
  }
}

#include "ailut_simd_kernels.inc"

// A vertex row of at most 33 entries held in registers, for locate_sorted: entries 0..31
// in (r0, r1) and 1..32 in (s0, s1), so a two-source permutation reads row[k], row[k+1]
// and the scan's row[lb] for 16 lanes where RowInMemory gathers them: the same values,
// so the same cells and results. `short_row` holds the row followed by +inf, at least 48
// entries (kShortStride in ailut_cpu.cc).
struct RowInRegisters {
  VF r0, r1, s0, s1;
  float last;  // entry 32
  AILUT_SIMD_FN explicit RowInRegisters(const float* short_row)
      : r0(_mm512_loadu_ps(short_row)),
        r1(_mm512_loadu_ps(short_row + 16)),
        s0(_mm512_loadu_ps(short_row + 1)),
        s1(_mm512_loadu_ps(short_row + 17)),
        last(short_row[32]) {}
  // row[i] for i <= d - 1 <= 32: entries 0..31 from (r0, r1), entry 32 on its own.
  AILUT_SIMD_FN VF scan_at(VI i, VM) const {
    return _mm512_mask_blend_ps(icmp_eq(i, iset(32)), _mm512_permutex2var_ps(r0, i, r1),
                                fset(last));
  }
  AILUT_SIMD_FN VF at(VI k) const { return _mm512_permutex2var_ps(r0, k, r1); }    // k <= 31
  AILUT_SIMD_FN VF next(VI k) const { return _mm512_permutex2var_ps(s0, k, s1); }  // row[k + 1]
};

struct Sorted {
  const float* v;
  const float* padded_rows;
  const uint16_t* buckets;
  const float* short_rows;  // rows of D <= 33 in slots of short_stride values, or null
  int n_buckets;
  int has_vertex;  // the flag bit of a bucket entry (a power of two; below it the bound)
  int d;
  int padded;
  int short_stride;
  AILUT_SIMD_FN Pos operator()(int c, VF x) const {
    if (short_rows != nullptr) {
      return locate_sorted(RowInRegisters(short_rows + c * short_stride), padded_rows + c * padded,
                           padded, buckets + c * n_buckets, n_buckets, has_vertex, d, x);
    }
    return locate_sorted(RowInMemory{v + c * d}, padded_rows + c * padded, padded,
                         buckets + c * n_buckets, n_buckets, has_vertex, d, x);
  }
};

#undef AILUT_SIMD_FN
#undef AILUT_SIMD_ENTRY

}  // namespace avx512
}  // namespace ailut

#endif
