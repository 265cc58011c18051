// CPU handlers of the AiLUT and 3D-LUT transforms, and the nanobind module that
// exports them as XLA FFI capsules.
//
// Parallel over pixels and batch with a fixed static partition. The backward
// accumulates each thread's LUT / vertex gradients in its own float64 buffer and sums
// the buffers in thread order, so results are bit-identical from run to run.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "ailut_math.h"
#include "ailut_shapes.h"
#include "nanobind/nanobind.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace ailut {
namespace {

// Below this many pixels per thread, starting a thread costs more than it saves.
constexpr int64_t kMinPixelsPerThread = 1 << 15;

int max_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("AILUT_NUM_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return v;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(std::min(hw, 64u));
  }();
  return n;
}

int threads_for(int64_t work) {
  const int64_t by_work = std::max<int64_t>(1, work / kMinPixelsPerThread);
  return static_cast<int>(std::min<int64_t>(max_threads(), by_work));
}

// Runs fn(t) for t in [0, n); t = 0 on the calling thread.
template <typename F>
void parallel_for(int n, const F& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(n - 1);
  for (int t = 1; t < n; ++t) workers.emplace_back([&fn, t] { fn(t); });
  fn(0);
  for (auto& w : workers) w.join();
}

// [begin, end) of thread t out of n over `count` items, contiguous and fixed.
inline void static_range(int64_t count, int t, int n, int64_t* begin, int64_t* end) {
  *begin = count * t / n;
  *end = count * (t + 1) / n;
}

// ---------------------------------------------------------------- locating cells

// Views that locate a channel value in its cell; small PODs passed by value so the
// hot loops keep their fields in registers.
template <typename T>
struct SearchView {  // any vertex values: the reference bisection
  const T* v;
  int d;
  AxisPos<T> operator()(int c, T x) const { return locate(v + c * d, d, x); }
};

template <typename T>
struct SortedView {  // sorted rows: branch-free search over rows padded with +inf
  const T* v;
  const T* padded_rows;
  int d;
  int padded;
  AxisPos<T> operator()(int c, T x) const {
    const int lb = lower_bound_sorted(padded_rows + c * padded, padded, x);
    return axis_from_cell(v + c * d, clamp_cell(lb, d), x);
  }
};

template <typename T>
struct UniformView {  // the uniform grid i / (d - 1): computed cells
  int d;
  AxisPos<T> operator()(int, T x) const { return locate_uniform(d, x); }
};

// One batch element's vertices. When every row is sorted (no NaN), the rows are also
// kept padded with +inf to a power of two for SortedView, which agrees with the
// bisection on sorted rows; otherwise SearchView is used.
template <typename T>
struct VertexRows {
  const T* v = nullptr;
  int d = 0;
  int padded = 0;
  bool sorted = false;
  std::vector<T> rows;  // 3 * padded when sorted

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
    for (int c = 0; c < 3; ++c) std::copy(v + c * d, v + (c + 1) * d, rows.begin() + c * padded);
  }

  // Calls fn(view) with the fastest view valid for these rows.
  template <typename F>
  void dispatch(const F& fn) const {
    if (sorted) {
      fn(SortedView<T>{v, rows.data(), d, padded});
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

// ---------------------------------------------------------------- forward

template <typename T, typename View>
void forward_pixels(const T* __restrict img, T* __restrict out, const T* __restrict lut,
                    int64_t d, const View view, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const T* px = img + 3 * i;
    const AxisPos<T> r = view(0, px[0]);
    const AxisPos<T> g = view(1, px[1]);
    const AxisPos<T> b = view(2, px[2]);
    blend(lut, d, r, g, b, out + 3 * i);
  }
}

// Flat range over batch x pixels, split evenly across threads.
template <typename T, typename Rows>
void forward_all(const Problem& p, const T* img, const T* lut, const std::vector<Rows>& rows,
                 T* out) {
  const int64_t total = p.batch * p.pixels;
  const int64_t lut_size = 3 * p.d * p.d * p.d;
  const int n = threads_for(total);
  parallel_for(n, [&](int t) {
    int64_t begin, end;
    static_range(total, t, n, &begin, &end);
    while (begin < end) {
      const int64_t b = begin / p.pixels;
      const int64_t stop = std::min(end, (b + 1) * p.pixels);
      rows[b].dispatch([&](auto view) {
        forward_pixels(img, out, lut + b * lut_size, p.d, view, begin, stop);
      });
      begin = stop;
    }
  });
}

// ---------------------------------------------------------------- backward

template <typename T, typename View, bool kVertexGrad>
void backward_pixels(const T* __restrict g_out, const T* __restrict img,
                     const T* __restrict lut, int64_t d, const View view, int64_t begin,
                     int64_t end, T* __restrict d_img, double* __restrict d_lut,
                     double* __restrict d_vert) {
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
    for (int c = 0; c < 3; ++c) {
      T dx, dv0, dv1;
      axis_grads(pos[c], G[c], &dx, &dv0, &dv1);
      d_img[3 * i + c] = dx;
      if (kVertexGrad) {
        d_vert[c * d + pos[c].k] += static_cast<double>(dv0);
        d_vert[c * d + pos[c].k + 1] += static_cast<double>(dv1);
      }
    }
  }
}

// Per batch element: threads split the pixels, each accumulating into its own float64
// partial buffers, then the partials are summed in thread order (slices of the LUT in
// parallel) and rounded once to T.
template <typename T, typename Rows, bool kVertexGrad>
void backward_all(const Problem& p, const T* g_out, const T* img, const T* lut,
                  const std::vector<Rows>& rows, T* d_img, T* d_lut, T* d_vert) {
  const int64_t lut_size = 3 * p.d * p.d * p.d;
  const int64_t vert_size = 3 * p.d;
  const int n = threads_for(p.pixels);
  std::vector<double> lut_part(static_cast<size_t>(n) * lut_size);
  std::vector<double> vert_part(static_cast<size_t>(n) * vert_size);
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t off = b * p.pixels;
    std::fill(vert_part.begin(), vert_part.end(), 0.0);
    parallel_for(n, [&](int t) {
      double* lp = lut_part.data() + t * lut_size;
      std::fill(lp, lp + lut_size, 0.0);
      int64_t begin, end;
      static_range(p.pixels, t, n, &begin, &end);
      rows[b].dispatch([&](auto view) {
        backward_pixels<T, decltype(view), kVertexGrad>(
            g_out + 3 * off, img + 3 * off, lut + b * lut_size, p.d, view, begin, end,
            d_img + 3 * off, lp, vert_part.data() + t * vert_size);
      });
    });
    T* dl = d_lut + b * lut_size;
    parallel_for(n, [&](int t) {
      int64_t begin, end;
      static_range(lut_size, t, n, &begin, &end);
      for (int64_t j = begin; j < end; ++j) {
        double acc = 0.0;
        for (int s = 0; s < n; ++s) acc += lut_part[s * lut_size + j];
        dl[j] = static_cast<T>(acc);
      }
    });
    if (kVertexGrad) {
      T* dv = d_vert + b * vert_size;
      for (int64_t j = 0; j < vert_size; ++j) {
        double acc = 0.0;
        for (int s = 0; s < n; ++s) acc += vert_part[s * vert_size + j];
        dv[j] = static_cast<T>(acc);
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
    auto run = [&](auto tag) {
      using T = decltype(tag);
      forward_all(p, img.typed_data<T>(), lut.typed_data<T>(),
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
    if (auto e = check_same(op, "d_lut", lut, *d_lut); e.failure()) return e;
    if (auto e = check_same(op, "d_vertices", vertices, *d_vertices); e.failure()) return e;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      backward_all<T, VertexRows<T>, true>(
          p, g_out.typed_data<T>(), img.typed_data<T>(), lut.typed_data<T>(),
          vertex_rows(p, vertices.typed_data<T>()), d_img->typed_data<T>(),
          d_lut->typed_data<T>(), d_vertices->typed_data<T>());
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

ffi::Error LutForwardImpl(ffi::AnyBuffer img, ffi::AnyBuffer lut,
                          ffi::Result<ffi::AnyBuffer> out) {
  constexpr const char* op = "lut_forward";
  return guarded(op, [&]() -> ffi::Error {
    Problem p;
    if (auto e = check_problem(op, img, lut, nullptr, &p); e.failure()) return e;
    if (auto e = check_same(op, "out", img, *out); e.failure()) return e;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      forward_all(p, img.typed_data<T>(), lut.typed_data<T>(), uniform_rows<T>(p),
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
    if (auto e = check_same(op, "d_lut", lut, *d_lut); e.failure()) return e;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      backward_all<T, UniformRows<T>, false>(p, g_out.typed_data<T>(), img.typed_data<T>(),
                                             lut.typed_data<T>(), uniform_rows<T>(p),
                                             d_img->typed_data<T>(), d_lut->typed_data<T>(),
                                             nullptr);
    };
    p.dtype == ffi::DataType::F32 ? run(float{}) : run(double{});
    return ffi::Error::Success();
  });
}

}  // namespace
}  // namespace ailut

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutForward, ailut::AilutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()   // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>()); // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutBackward, ailut::AilutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()   // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>()   // d_img
                                  .Ret<ffi::AnyBuffer>()   // d_lut
                                  .Ret<ffi::AnyBuffer>()); // d_vertices

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutForward, ailut::LutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>()); // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutBackward, ailut::LutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()   // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>()   // d_img
                                  .Ret<ffi::AnyBuffer>()); // d_lut

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
  m.def("max_threads", &ailut::max_threads, "Threads the CPU kernels use at most.");
}
