// CPU handlers of the AiLUT and 3D-LUT transforms, and the nanobind module that
// exports them as XLA FFI capsules.
//
// Parallel over pixels and batch on a persistent worker pool (ailut_pool.h). The work
// is cut into items decided by the problem's size alone; the backward accumulates each
// pixel slice's LUT / vertex gradients in its own float64 buffer and sums the buffers in
// slice order (plan_backward), so results are bit-identical whatever the number of
// threads, run after run.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "ailut_math.h"
#include "ailut_pool.h"
#include "ailut_shapes.h"
#include "ailut_simd.h"
#include "nanobind/nanobind.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace ailut {
namespace {

// Work items of the forward: runs of this many pixels (any split gives the same output).
constexpr int64_t kForwardChunk = 1 << 15;

// The backward's pixel slices (see plan_backward): at least this many pixels each, at
// most kMaxSlices per image, and at most kMaxPartialBytes of float64 partial sums.
constexpr int64_t kMinSlicePixels = 1 << 15;
constexpr int64_t kMaxSlices = 32;
constexpr int64_t kMaxPartialBytes = int64_t{64} << 20;

// LUT entries per item of the backward's reduction of the partial sums.
constexpr int64_t kReduceChunk = 512;

// Output buffers of full-size images are fresh, untouched memory from XLA's allocator,
// and first-touch page faults cost as much as the transform itself on some machines
// (~85 ms for a 4K float32 image here). Asking for transparent huge pages on the
// buffer's 2 MiB-aligned interior cuts the number of faults ~500-fold where the
// kernel's THP mode is "madvise". Advice only: any failure is ignored.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 4 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// The backward's float64 partial sums are kept between calls: a fresh buffer costs its
// page faults on every call (~37 MB and ~5 ms for a 4K image, every training step). One
// buffer is kept, the largest handed back, at most kMaxPartialBytes plus one image's
// partials (plan_backward's bound), so the memory held is bounded; a call that finds
// it taken (another call running) allocates its own.
class PartialsCache {
 public:
  struct Buffer {
    std::unique_ptr<double[]> data;
    size_t size = 0;
  };

  Buffer take(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (kept_.size >= n) {
        Buffer b = std::move(kept_);
        kept_.size = 0;
        return b;
      }
    }
    Buffer b;
    b.data.reset(new double[n]);
    b.size = n;
    advise_huge_pages(b.data.get(), n * sizeof(double));
    return b;
  }

  void give_back(Buffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (b.size > kept_.size) kept_ = std::move(b);
  }

 private:
  std::mutex mu_;
  Buffer kept_;
};

PartialsCache& partials_cache() {
  static PartialsCache* cache = new PartialsCache();  // never destroyed: no exit-order issues
  return *cache;
}

// Takes a buffer of at least n doubles from the cache and hands it back when destroyed.
class CachedPartials {
 public:
  explicit CachedPartials(size_t n) : buf_(partials_cache().take(n)) {}
  ~CachedPartials() { partials_cache().give_back(std::move(buf_)); }
  CachedPartials(const CachedPartials&) = delete;
  CachedPartials& operator=(const CachedPartials&) = delete;
  double* get() const { return buf_.data.get(); }

 private:
  PartialsCache::Buffer buf_;
};

// ---------------------------------------------------------------- locating cells

// Views that locate a channel value in its cell; small PODs passed by value so the
// hot loops keep their fields in registers.
template <typename T>
struct SearchView {  // any vertex values: the reference bisection
  const T* v;
  int d;
  AxisPos<T> operator()(int c, T x) const { return locate(v + c * d, d, x); }
};

// Buckets of [0, 1) for the sorted-rows search; a power of two so x * kBuckets and
// j / kBuckets are exact.
constexpr int kBuckets = 1024;

// A bucket's entry: the lower bound of its left edge (D <= 1024, ailut_shapes.h), plus
// kBucketHasVertex when a vertex lies inside the bucket. Without one, every x in the
// bucket has that same lower bound and no comparison is needed.
constexpr uint16_t kBucketHasVertex = 0x8000;
constexpr uint16_t kBucketBound = 0x7FFF;

// Rows of at most kShortRow vertices (the authors' D = 33 and below) are also copied into
// slots of kShortStride values (+inf after the row), which the AVX-512 path keeps in
// registers (ailut_simd.h: avx512::RowInRegisters).
constexpr int kShortRow = 33;
constexpr int kShortStride = 48;

template <typename T>
struct SortedView {  // sorted rows (no NaN): bucket start, then a short forward scan
  const T* v;
  const T* padded_rows;     // rows padded with +inf to `padded` entries
  const uint16_t* buckets;  // buckets[c][j]: lower_bound(row c, j / kBuckets) and flag
  const T* short_rows;      // D <= kShortRow: rows in kShortStride slots (SIMD), else null
  int d;
  int padded;
  AxisPos<T> operator()(int c, T x) const {
    const T* row = v + c * d;
    int lb;
    if (x >= T(0) && x < T(1)) {  // false for NaN
      // j / kBuckets <= x, so the true lower bound is at or after the bucket's, and equal
      // to it when no vertex lies inside the bucket.
      const uint16_t e = buckets[c * kBuckets + static_cast<int>(x * T(kBuckets))];
      lb = e & kBucketBound;
      if (e & kBucketHasVertex) {
        while (lb < d && row[lb] < x) ++lb;
      }
    } else {
      lb = lower_bound_sorted(padded_rows + c * padded, padded, x);
    }
    return axis_from_cell(row, clamp_cell(lb, d), x);
  }
};

template <typename T>
struct UniformView {  // the uniform grid i / (d - 1): computed cells
  int d;
  AxisPos<T> operator()(int, T x) const { return locate_uniform(d, x); }
};

// One batch element's vertices. When every row is sorted (no NaN), search tables are
// built for SortedView, which finds the same lower bound as the bisection on sorted
// rows; otherwise SearchView (the bisection itself) is used.
template <typename T>
struct VertexRows {
  const T* v = nullptr;
  int d = 0;
  int padded = 0;
  bool sorted = false;
  std::vector<T> rows;          // 3 * padded when sorted
  std::vector<uint16_t> table;  // 3 * kBuckets when sorted
  std::vector<T> short_rows;    // 3 * kShortStride when sorted and d <= kShortRow

  void init(const T* vertices, int d_) {
    v = vertices;
    d = d_;
    sorted = true;
    // Every vertex takes part in a comparison (d >= 2), so a NaN also fails it.
    for (int c = 0; c < 3; ++c) {
      for (int i = 0; i + 1 < d; ++i) sorted = sorted && (v[c * d + i] <= v[c * d + i + 1]);
    }
    if (!sorted) return;
    padded = 1;
    while (padded <= d) padded <<= 1;
    rows.assign(3 * static_cast<size_t>(padded), std::numeric_limits<T>::infinity());
    // One padding entry past the end for the AVX2 path's 32-bit gathers (ailut_simd.h).
    table.assign(3 * static_cast<size_t>(kBuckets) + 1, 0);
    if (std::is_same_v<T, float> && d <= kShortRow) {
      short_rows.assign(3 * static_cast<size_t>(kShortStride), std::numeric_limits<T>::infinity());
      for (int c = 0; c < 3; ++c) {
        std::copy(v + c * d, v + (c + 1) * d, short_rows.begin() + c * kShortStride);
      }
    }
    for (int c = 0; c < 3; ++c) {
      const T* row = v + c * d;
      std::copy(row, row + d, rows.begin() + c * padded);
      uint16_t* entries = &table[c * kBuckets];
      int lb = 0;
      for (int j = 0; j <= kBuckets; ++j) {
        // For sorted rows the lower bound of an edge is the count of vertices below it;
        // a bucket holds a vertex exactly when its right edge's count is larger.
        const T edge = static_cast<T>(j) / static_cast<T>(kBuckets);
        const int prev = lb;
        while (lb < d && row[lb] < edge) ++lb;
        if (j > 0 && lb > prev) entries[j - 1] |= kBucketHasVertex;
        if (j < kBuckets) entries[j] = static_cast<uint16_t>(lb);
      }
    }
  }

  // Calls fn(view) with the fastest view valid for these rows.
  template <typename F>
  void dispatch(const F& fn) const {
    if (sorted) {
      fn(SortedView<T>{v, rows.data(), table.data(),
                       short_rows.empty() ? nullptr : short_rows.data(), d, padded});
    } else {
      fn(SearchView<T>{v, d});
    }
  }
};

template <typename T>
struct UniformRows {
  int d = 0;
  template <typename F>
  void dispatch(const F& fn) const {
    fn(UniformView<T>{d});
  }
};

// ---------------------------------------------------------------- packed LUT
//
// For images with many pixels per LUT entry, the LUT is repacked as [b][g][r][4]
// (channels interleaved, padded to 4) so one corner is one 4-lane vector load instead
// of three scattered loads, and gradients scatter as one vector add per corner. The
// per-lane arithmetic and its order are those of blend() / pixel_backward(), so the
// results are the same as the scalar path's.

template <typename T>
struct Vec4Of;
template <>
struct Vec4Of<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct Vec4Of<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec4 = typename Vec4Of<T>::type;

template <typename T>
inline Vec4<T> load4(const T* p) {
  Vec4<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store4(T* p, Vec4<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

inline bool use_packed(const Problem& p) { return p.pixels >= 2 * p.d * p.d * p.d; }

template <typename T>
void pack_lut(const T* lut, int64_t d3, T* packed) {
  for (int64_t j = 0; j < d3; ++j) {
    packed[4 * j + 0] = lut[j];
    packed[4 * j + 1] = lut[d3 + j];
    packed[4 * j + 2] = lut[2 * d3 + j];
    packed[4 * j + 3] = T(0);
  }
}

inline void packed_offsets(int64_t d, int64_t off[8]) {
  for (int k = 0; k < 8; ++k) off[k] = 4 * corner_offset(k, d);
}

// ---------------------------------------------------------------- SIMD dispatch
//
// The forward and the backward run 16 pixels per step with AVX-512 or 8 with AVX2
// (ailut_simd.h), whichever the CPU has (AVX-512 first), for float32 rows with uniform
// or sorted vertices; the scalar loops do the rest (tails, float64, unsorted or NaN
// vertices). AILUT_SIMD=avx2 caps the choice at AVX2; AILUT_SIMD=off (or 0, scalar)
// forces the scalar path. All paths give bit-identical outputs and gradients
// (tests/test_simd.py).

enum class Simd { kScalar, kAvx2, kAvx512 };

Simd detect_simd() {
  const char* env = std::getenv("AILUT_SIMD");
  const std::string want = env == nullptr ? "" : env;
  if (want == "off" || want == "0" || want == "scalar") return Simd::kScalar;
#if defined(AILUT_HAVE_X86_SIMD)
  __builtin_cpu_init();
  if (want != "avx2" && __builtin_cpu_supports("avx512f")) return Simd::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Simd::kAvx2;
#endif
  return Simd::kScalar;
}

Simd simd_path() {
  static const Simd path = detect_simd();
  return path;
}

// The path for a LUT of d3 entries per channel: the SIMD gathers index with int32, so
// the packed LUT's 4 * D^3 entries must fit.
Simd simd_for(int64_t d3) {
  return 4 * d3 <= std::numeric_limits<int32_t>::max() ? simd_path() : Simd::kScalar;
}

const char* simd_name(Simd path) {
  switch (path) {
    case Simd::kAvx512:
      return "avx512";
    case Simd::kAvx2:
      return "avx2";
    default:
      return "scalar";
  }
}

// Forward of a prefix of [begin, end) with SIMD; returns the number of pixels done (a
// multiple of the lane count). This generic version does none: the scalar loop takes
// everything (float64, the bisection of unsorted rows).
template <typename T, typename View>
int64_t forward_simd(Simd, const T*, T*, const T*, int, int64_t, int, const View&, int64_t,
                     int64_t) {
  return 0;
}

// Backward of a prefix of [begin, end) with SIMD into one slice's partials; returns the
// number of pixels done. Generic version: none, the scalar loop does all.
template <bool kVertexGrad, typename T, typename View>
int64_t backward_simd(Simd, const T*, const T*, const T*, int, int64_t, int, const View&, int64_t,
                      int64_t, T*, double*, double*) {
  return 0;
}

#if defined(AILUT_HAVE_X86_SIMD)
// The SIMD locators of the scalar views, for each instruction set.
inline avx2::Uniform avx2_view(const UniformView<float>& view) { return {view.d}; }
inline avx512::Uniform avx512_view(const UniformView<float>& view) { return {view.d}; }
inline avx2::Sorted avx2_view(const SortedView<float>& view) {
  return {view.v, view.padded_rows, view.buckets, kBuckets, kBucketHasVertex, view.d, view.padded};
}
inline avx512::Sorted avx512_view(const SortedView<float>& view) {
  return {view.v,           view.padded_rows, view.buckets, view.short_rows, kBuckets,
          kBucketHasVertex, view.d,           view.padded,  kShortStride};
}

template <typename View, typename = std::enable_if_t<std::is_same_v<View, UniformView<float>> ||
                                                     std::is_same_v<View, SortedView<float>>>>
int64_t forward_simd(Simd path, const float* img, float* out, const float* lut, int entry_stride,
                     int64_t chan_stride, int d, const View& view, int64_t begin, int64_t end) {
  if (path == Simd::kAvx512) {
    return avx512::forward(img, out, lut, entry_stride, chan_stride, d, avx512_view(view), begin,
                           end);
  }
  return avx2::forward(img, out, lut, entry_stride, chan_stride, d, avx2_view(view), begin, end);
}

template <bool kVertexGrad, typename View,
          typename = std::enable_if_t<std::is_same_v<View, UniformView<float>> ||
                                      std::is_same_v<View, SortedView<float>>>>
int64_t backward_simd(Simd path, const float* g_out, const float* img, const float* lut,
                      int entry_stride, int64_t chan_stride, int d, const View& view, int64_t begin,
                      int64_t end, float* d_img, double* d_lut, double* d_vert) {
  if (path == Simd::kAvx512) {
    return avx512::backward<kVertexGrad>(g_out, img, lut, entry_stride, chan_stride, d,
                                         avx512_view(view), begin, end, d_img, d_lut, d_vert);
  }
  return avx2::backward<kVertexGrad>(g_out, img, lut, entry_stride, chan_stride, d, avx2_view(view),
                                     begin, end, d_img, d_lut, d_vert);
}
#endif

// ---------------------------------------------------------------- forward

template <typename T, typename View>
void forward_pixels(const T* __restrict img, T* __restrict out, const T* __restrict lut, int64_t d,
                    const View view, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const T* px = img + 3 * i;
    const AxisPos<T> r = view(0, px[0]);
    const AxisPos<T> g = view(1, px[1]);
    const AxisPos<T> b = view(2, px[2]);
    blend(lut, d, r, g, b, out + 3 * i);
  }
}

template <typename T, typename View>
void forward_pixels_packed(const T* __restrict img, T* __restrict out, const T* __restrict packed,
                           int64_t d, const View view, int64_t begin, int64_t end) {
  int64_t off[8];
  packed_offsets(d, off);
  for (int64_t i = begin; i < end; ++i) {
    const T* px = img + 3 * i;
    const AxisPos<T> r = view(0, px[0]);
    const AxisPos<T> g = view(1, px[1]);
    const AxisPos<T> b = view(2, px[2]);
    const T* base = packed + 4 * base_index(r, g, b, d);
    T w[8];
    corner_weights(r.t, g.t, b.t, w);
    Vec4<T> acc = {T(0), T(0), T(0), T(0)};
    for (int k = 0; k < 8; ++k) acc += w[k] * load4(base + off[k]);
    out[3 * i] = acc[0];
    out[3 * i + 1] = acc[1];
    out[3 * i + 2] = acc[2];
  }
}

// Flat range over batch x pixels in runs of kForwardChunk pixels, one work item each.
template <typename T, typename Rows>
void forward_all(WorkerPool& pool, const Problem& p, const T* img, const T* lut,
                 const std::vector<Rows>& rows, T* out) {
  const int64_t total = p.batch * p.pixels;
  const int64_t d3 = p.d * p.d * p.d;
  const bool packed = use_packed(p);
  const Simd simd = simd_for(d3);
  std::vector<T> packed_luts(packed ? static_cast<size_t>(p.batch * 4 * d3) : 0);
  if (packed) {
    pool.run(p.batch, [&](int64_t b) { pack_lut(lut + b * 3 * d3, d3, &packed_luts[b * 4 * d3]); });
  }
  const int64_t items = (total + kForwardChunk - 1) / kForwardChunk;
  pool.run(items, [&](int64_t item) {
    int64_t begin = item * kForwardChunk;
    const int64_t end = std::min(total, begin + kForwardChunk);
    while (begin < end) {
      const int64_t b = begin / p.pixels;
      const int64_t stop = std::min(end, (b + 1) * p.pixels);
      rows[b].dispatch([&](auto view) {
        const T* l = packed ? &packed_luts[b * 4 * d3] : lut + b * 3 * d3;
        int64_t from = begin;
        if (simd != Simd::kScalar) {
          from += forward_simd(simd, img, out, l, packed ? 4 : 1, packed ? 1 : d3,
                               static_cast<int>(p.d), view, begin, stop);
        }
        if (packed) {
          forward_pixels_packed(img, out, l, p.d, view, from, stop);
        } else {
          forward_pixels(img, out, l, p.d, view, from, stop);
        }
      });
      begin = stop;
    }
  });
}

// ---------------------------------------------------------------- backward

template <typename T, bool kVertexGrad>
inline void store_axis_grads(const AxisPos<T> pos[3], const T G[3], int64_t d, T* d_img_px,
                             double* d_vert) {
  for (int c = 0; c < 3; ++c) {
    T dx, dv0, dv1;
    axis_grads(pos[c], G[c], &dx, &dv0, &dv1);
    d_img_px[c] = dx;
    if (kVertexGrad) {
      d_vert[c * d + pos[c].k] += static_cast<double>(dv0);
      d_vert[c * d + pos[c].k + 1] += static_cast<double>(dv1);
    }
  }
}

template <typename T, typename View, bool kVertexGrad>
void backward_pixels(const T* __restrict g_out, const T* __restrict img, const T* __restrict lut,
                     int64_t d, const View view, int64_t begin, int64_t end, T* __restrict d_img,
                     double* __restrict d_lut, double* __restrict d_vert) {
  const int64_t d3 = d * d * d;
  for (int64_t i = begin; i < end; ++i) {
    const T* px = img + 3 * i;
    const AxisPos<T> pos[3] = {view(0, px[0]), view(1, px[1]), view(2, px[2])};
    const T* go = g_out + 3 * i;
    T w[8], G[3];
    pixel_backward(lut, d, pos[0], pos[1], pos[2], go, w, G);
    const int64_t base = base_index(pos[0], pos[1], pos[2], d);
    for (int c = 0; c < 3; ++c) {
      double* dl = d_lut + c * d3 + base;
      const T gc = go[c];
      for (int k = 0; k < 8; ++k) dl[corner_offset(k, d)] += static_cast<double>(gc * w[k]);
    }
    store_axis_grads<T, kVertexGrad>(pos, G, d, d_img + 3 * i, d_vert);
  }
}

// Packed variant: reads the [.., 4] LUT and scatters into a [.., 4] float64 buffer.
template <typename T, typename View, bool kVertexGrad>
void backward_pixels_packed(const T* __restrict g_out, const T* __restrict img,
                            const T* __restrict packed, int64_t d, const View view, int64_t begin,
                            int64_t end, T* __restrict d_img, double* __restrict d_lut4,
                            double* __restrict d_vert) {
  int64_t off[8];
  packed_offsets(d, off);
  for (int64_t i = begin; i < end; ++i) {
    const T* px = img + 3 * i;
    const AxisPos<T> pos[3] = {view(0, px[0]), view(1, px[1]), view(2, px[2])};
    const T* go = g_out + 3 * i;
    const int64_t base = 4 * base_index(pos[0], pos[1], pos[2], d);
    T w[8];
    corner_weights(pos[0].t, pos[1].t, pos[2].t, w);
    const T wr[2] = {T(1) - pos[0].t, pos[0].t};
    const T wg[2] = {T(1) - pos[1].t, pos[1].t};
    const T wb[2] = {T(1) - pos[2].t, pos[2].t};
    Vec4<T> corner[8];
    for (int k = 0; k < 8; ++k) corner[k] = load4(packed + base + off[k]);
    Vec4<T> dr = {}, dg = {}, db = {};
    for (int k = 0; k < 8; k += 2)
      dr += wg[(k >> 1) & 1] * wb[(k >> 2) & 1] * (corner[k + 1] - corner[k]);
    for (int k = 0; k < 8; ++k) {
      if ((k >> 1) & 1) continue;
      dg += wr[k & 1] * wb[(k >> 2) & 1] * (corner[k + 2] - corner[k]);
    }
    for (int k = 0; k < 4; ++k) db += wr[k & 1] * wg[(k >> 1) & 1] * (corner[k + 4] - corner[k]);
    T G[3] = {T(0), T(0), T(0)};
    for (int c = 0; c < 3; ++c) {
      G[0] += go[c] * dr[c];
      G[1] += go[c] * dg[c];
      G[2] += go[c] * db[c];
    }
    const Vec4<T> g4 = {go[0], go[1], go[2], T(0)};
    for (int k = 0; k < 8; ++k) {
      double* dst = d_lut4 + base + off[k];
      store4(dst, load4(dst) + __builtin_convertvector(g4 * w[k], Vec4<double>));
    }
    store_axis_grads<T, kVertexGrad>(pos, G, d, d_img + 3 * i, d_vert);
  }
}

// How the backward splits its work. Each image's pixels are cut into `slices` fixed
// ranges; each slice accumulates its LUT and vertex gradients in float64 in its own
// buffer, and the buffers are then summed in slice order. Both numbers depend only on
// the problem's size, never on the number of threads, so every sum is taken in the
// same order whichever thread runs which slice: the gradients are bit-identical for
// any AILUT_NUM_THREADS. `group` images are processed per pass to bound the partials'
// memory.
struct BackwardPlan {
  int64_t slices;  // pixel slices per image
  int64_t group;   // images per pass
  int64_t part;    // float64 values of one slice's LUT partials
  int64_t vert;    // float64 values of one slice's vertex partials
};

inline BackwardPlan plan_backward(const Problem& p) {
  BackwardPlan plan;
  const int64_t d3 = p.d * p.d * p.d;
  plan.part = use_packed(p) ? 4 * d3 : 3 * d3;
  plan.vert = 3 * p.d;
  const int64_t slice_bytes =
      std::max<int64_t>(1, (plan.part + plan.vert) * static_cast<int64_t>(sizeof(double)));
  int64_t s = std::min(kMaxSlices, std::max<int64_t>(1, p.pixels / kMinSlicePixels));
  s = std::min(s, std::max<int64_t>(1, kMaxPartialBytes / slice_bytes));
  plan.slices = s;
  plan.group = std::min(p.batch, std::max<int64_t>(1, kMaxPartialBytes / (s * slice_bytes)));
  return plan;
}

template <typename T, typename Rows, bool kVertexGrad>
void backward_all(WorkerPool& pool, const Problem& p, const T* g_out, const T* img, const T* lut,
                  const std::vector<Rows>& rows, T* d_img, T* d_lut, T* d_vert) {
  const int64_t d3 = p.d * p.d * p.d;
  const int64_t lut_size = 3 * d3;
  const int64_t vert_size = 3 * p.d;
  const bool packed = use_packed(p);
  const BackwardPlan plan = plan_backward(p);
  const int64_t S = plan.slices;
  const Simd simd = simd_for(d3);
  // Uninitialised: each slice zeroes its own partials, in parallel.
  CachedPartials lut_part(static_cast<size_t>(plan.group * S * plan.part));
  std::unique_ptr<double[]> vert_part(new double[plan.group * S * plan.vert]);
  std::vector<T> packed_luts(packed ? static_cast<size_t>(plan.group * 4 * d3) : 0);
  // Packed partials hold entry (c, idx) at 4 * idx + c; plain ones at c * d3 + idx.
  const int64_t lanes = packed ? 4 : 1;
  const int64_t entries = packed ? d3 : lut_size;
  const int64_t chunks = (entries + kReduceChunk - 1) / kReduceChunk;

  for (int64_t b0 = 0; b0 < p.batch; b0 += plan.group) {
    const int64_t g = std::min(plan.group, p.batch - b0);
    if (packed) {
      pool.run(
          g, [&](int64_t e) { pack_lut(lut + (b0 + e) * lut_size, d3, &packed_luts[e * 4 * d3]); });
    }
    pool.run(g * S, [&](int64_t item) {
      const int64_t e = item / S;
      const int64_t s = item % S;
      const int64_t b = b0 + e;
      double* lp = lut_part.get() + item * plan.part;
      double* vp = vert_part.get() + item * plan.vert;
      std::fill(lp, lp + plan.part, 0.0);
      std::fill(vp, vp + plan.vert, 0.0);
      const int64_t begin = p.pixels * s / S;
      const int64_t end = p.pixels * (s + 1) / S;
      const int64_t off = b * p.pixels;
      rows[b].dispatch([&](auto view) {
        const T* l = packed ? &packed_luts[e * 4 * d3] : lut + b * lut_size;
        int64_t from = begin;
        if (simd != Simd::kScalar) {
          from += backward_simd<kVertexGrad>(simd, g_out + 3 * off, img + 3 * off, l,
                                             packed ? 4 : 1, packed ? 1 : d3, static_cast<int>(p.d),
                                             view, begin, end, d_img + 3 * off, lp, vp);
        }
        if (packed) {
          backward_pixels_packed<T, decltype(view), kVertexGrad>(
              g_out + 3 * off, img + 3 * off, l, p.d, view, from, end, d_img + 3 * off, lp, vp);
        } else {
          backward_pixels<T, decltype(view), kVertexGrad>(g_out + 3 * off, img + 3 * off, l, p.d,
                                                          view, from, end, d_img + 3 * off, lp, vp);
        }
      });
    });
    // Every entry is summed over slices 0, 1, ..., S-1 in that order; items only split
    // the entries between threads.
    pool.run(g * chunks, [&](int64_t item) {
      const int64_t e = item / chunks;
      const int64_t first = (item % chunks) * kReduceChunk;
      const int64_t n = std::min(kReduceChunk, entries - first);
      double acc[4 * kReduceChunk];
      std::fill(acc, acc + n * lanes, 0.0);
      for (int64_t s = 0; s < S; ++s) {
        const double* src = lut_part.get() + (e * S + s) * plan.part + first * lanes;
        for (int64_t j = 0; j < n * lanes; ++j) acc[j] += src[j];
      }
      T* dl = d_lut + (b0 + e) * lut_size;
      for (int64_t j = 0; j < n; ++j) {
        if (packed) {
          for (int64_t c = 0; c < 3; ++c) dl[c * d3 + first + j] = static_cast<T>(acc[4 * j + c]);
        } else {
          dl[first + j] = static_cast<T>(acc[j]);
        }
      }
    });
    if (kVertexGrad) {
      for (int64_t e = 0; e < g; ++e) {
        T* dv = d_vert + (b0 + e) * vert_size;
        for (int64_t j = 0; j < vert_size; ++j) {
          double acc = 0.0;
          for (int64_t s = 0; s < S; ++s) acc += vert_part[(e * S + s) * plan.vert + j];
          dv[j] = static_cast<T>(acc);
        }
      }
    }
  }
}

template <typename T>
std::vector<VertexRows<T>> vertex_rows(const Problem& p, const T* vertices) {
  std::vector<VertexRows<T>> rows(p.batch);
  for (int64_t b = 0; b < p.batch; ++b) rows[b].init(vertices + b * 3 * p.d, static_cast<int>(p.d));
  return rows;
}

template <typename T>
std::vector<UniformRows<T>> uniform_rows(const Problem& p) {
  return std::vector<UniformRows<T>>(p.batch, UniformRows<T>{static_cast<int>(p.d)});
}

// Handlers never let an exception (thread creation, allocation) cross into XLA.
template <typename F>
ffi::Error guarded(const char* op, const F& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string(op) + ": " + e.what());
  }
}

// ---------------------------------------------------------------- handlers

ffi::Error AilutForwardImpl(ffi::AnyBuffer img, ffi::AnyBuffer lut, ffi::AnyBuffer vertices,
                            ffi::Result<ffi::AnyBuffer> out) {
  constexpr const char* op = "ailut_forward";
  return guarded(op, [&]() -> ffi::Error {
    Problem p;
    if (auto e = check_problem(op, img, lut, &vertices, &p); e.failure()) return e;
    if (auto e = check_same(op, "out", img, *out); e.failure()) return e;
    advise_huge_pages(out->untyped_data(), out->size_bytes());
    auto run = [&](auto tag) {
      using T = decltype(tag);
      forward_all(*shared_pool(), p, img.typed_data<T>(), lut.typed_data<T>(),
                  vertex_rows(p, vertices.typed_data<T>()), out->typed_data<T>());
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

ffi::Error AilutBackwardImpl(ffi::AnyBuffer g_out, ffi::AnyBuffer img, ffi::AnyBuffer lut,
                             ffi::AnyBuffer vertices, ffi::Result<ffi::AnyBuffer> d_img,
                             ffi::Result<ffi::AnyBuffer> d_lut,
                             ffi::Result<ffi::AnyBuffer> d_vertices) {
  constexpr const char* op = "ailut_backward";
  return guarded(op, [&]() -> ffi::Error {
    Problem p;
    if (auto e = check_problem(op, img, lut, &vertices, &p); e.failure()) return e;
    if (auto e = check_same(op, "g_out", img, g_out); e.failure()) return e;
    if (auto e = check_same(op, "d_img", img, *d_img); e.failure()) return e;
    advise_huge_pages(d_img->untyped_data(), d_img->size_bytes());
    if (auto e = check_same(op, "d_lut", lut, *d_lut); e.failure()) return e;
    if (auto e = check_same(op, "d_vertices", vertices, *d_vertices); e.failure()) return e;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      backward_all<T, VertexRows<T>, true>(
          *shared_pool(), p, g_out.typed_data<T>(), img.typed_data<T>(), lut.typed_data<T>(),
          vertex_rows(p, vertices.typed_data<T>()), d_img->typed_data<T>(), d_lut->typed_data<T>(),
          d_vertices->typed_data<T>());
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

ffi::Error LutForwardImpl(ffi::AnyBuffer img, ffi::AnyBuffer lut, ffi::Result<ffi::AnyBuffer> out) {
  constexpr const char* op = "lut_forward";
  return guarded(op, [&]() -> ffi::Error {
    Problem p;
    if (auto e = check_problem(op, img, lut, nullptr, &p); e.failure()) return e;
    if (auto e = check_same(op, "out", img, *out); e.failure()) return e;
    advise_huge_pages(out->untyped_data(), out->size_bytes());
    auto run = [&](auto tag) {
      using T = decltype(tag);
      forward_all(*shared_pool(), p, img.typed_data<T>(), lut.typed_data<T>(), uniform_rows<T>(p),
                  out->typed_data<T>());
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

ffi::Error LutBackwardImpl(ffi::AnyBuffer g_out, ffi::AnyBuffer img, ffi::AnyBuffer lut,
                           ffi::Result<ffi::AnyBuffer> d_img, ffi::Result<ffi::AnyBuffer> d_lut) {
  constexpr const char* op = "lut_backward";
  return guarded(op, [&]() -> ffi::Error {
    Problem p;
    if (auto e = check_problem(op, img, lut, nullptr, &p); e.failure()) return e;
    if (auto e = check_same(op, "g_out", img, g_out); e.failure()) return e;
    if (auto e = check_same(op, "d_img", img, *d_img); e.failure()) return e;
    advise_huge_pages(d_img->untyped_data(), d_img->size_bytes());
    if (auto e = check_same(op, "d_lut", lut, *d_lut); e.failure()) return e;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      backward_all<T, UniformRows<T>, false>(
          *shared_pool(), p, g_out.typed_data<T>(), img.typed_data<T>(), lut.typed_data<T>(),
          uniform_rows<T>(p), d_img->typed_data<T>(), d_lut->typed_data<T>(), nullptr);
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

}  // namespace
}  // namespace ailut

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutForward, ailut::AilutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()    // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>());  // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutBackward, ailut::AilutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()    // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()    // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>()    // d_img
                                  .Ret<ffi::AnyBuffer>()    // d_lut
                                  .Ret<ffi::AnyBuffer>());  // d_vertices

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutForward, ailut::LutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>());  // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutBackward, ailut::LutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()    // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>()    // d_img
                                  .Ret<ffi::AnyBuffer>());  // d_lut

namespace {
template <typename Fn>
nb::capsule encapsulate(Fn* fn) {
  return nb::capsule(reinterpret_cast<void*>(fn));
}
}  // namespace

NB_MODULE(_ailut_cpu, m) {
  m.doc() = "XLA FFI CPU handlers of the AiLUT and 3D-LUT transforms";
  m.def("registrations", []() {
    nb::dict d;
    d["ailut_forward"] = encapsulate(AilutForward);
    d["ailut_backward"] = encapsulate(AilutBackward);
    d["lut_forward"] = encapsulate(LutForward);
    d["lut_backward"] = encapsulate(LutBackward);
    return d;
  });
  m.def(
      "num_threads", [] { return ailut::shared_pool()->size(); },
      "Threads that work on one call of the CPU kernels (the caller plus the pool's workers).");
  m.def("configured_threads", &ailut::configured_threads,
        "Threads the pool is sized to: AILUT_NUM_THREADS, else the affinity mask and the cgroup "
        "CPU quota, at most 64.");
  m.def(
      "set_num_threads", [](int n) { ailut::reset_shared_pool(n); }, nb::arg("n"),
      "Replace the worker pool by one of n threads (n <= 0: the configured size). For tests.");
  m.def(
      "simd_path", [] { return ailut::simd_name(ailut::simd_path()); },
      "The pixel loop in use (forward and backward): 'avx512' (16 float32 pixels per step, "
      "chosen when the CPU has AVX-512F), 'avx2' (8 per step: CPUs with AVX2 only, or "
      "AILUT_SIMD=avx2) or 'scalar' (other CPUs, or AILUT_SIMD=off).");
  m.def(
      "backward_slices",
      [](int64_t batch, int64_t pixels, int64_t d) {
        ailut::Problem p;
        p.batch = batch;
        p.pixels = pixels;
        p.d = d;
        const auto plan = ailut::plan_backward(p);
        return nb::make_tuple(plan.slices, plan.group);
      },
      nb::arg("batch"), nb::arg("pixels"), nb::arg("d"),
      "(pixel slices per image, images per pass) of the backward for this problem size.");
}
