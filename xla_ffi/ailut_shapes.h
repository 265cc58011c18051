// Host-side shape checks shared by the CPU and CUDA FFI handlers.
//
// Leading dimensions are batch everywhere: img (..., H, W, 3), lut (..., 3, D, D, D),
// vertices (..., 3, D), with identical leading dims. The Python wrapper validates
// first; these checks make the handlers safe on their own and return FFI errors
// naming the op and the shapes instead of aborting.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace ailut {

namespace ffi = xla::ffi;

struct Problem {
  int64_t batch = 1;   // product of the leading dims
  int64_t pixels = 0;  // H * W per batch element
  int64_t d = 0;       // lattice size
  ffi::DataType dtype = ffi::DataType::INVALID;
};

inline std::string dims_str(const ffi::AnyBuffer& x) {
  std::ostringstream s;
  s << "(";
  auto dims = x.dimensions();
  for (size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
  s << (dims.size() == 1 ? ",)" : ")");
  return s.str();
}

inline ffi::Error shape_error(const char* op, const std::string& what) {
  return ffi::Error::InvalidArgument(std::string(op) + ": " + what);
}

// Checks img / lut / (optional) vertices and fills `p`. `vertices` may be null for
// the uniform 3D-LUT op.
inline ffi::Error check_problem(const char* op, const ffi::AnyBuffer& img,
                                const ffi::AnyBuffer& lut, const ffi::AnyBuffer* vertices,
                                Problem* p) {
  const auto idims = img.dimensions();
  const auto ldims = lut.dimensions();
  const int64_t rank = static_cast<int64_t>(idims.size());
  std::string shapes = "img " + dims_str(img) + ", lut " + dims_str(lut);
  if (vertices) shapes += ", vertices " + dims_str(*vertices);
  if (img.element_type() != ffi::DataType::F32 && img.element_type() != ffi::DataType::F64) {
    return shape_error(op, "img must be float32 or float64");
  }
  if (lut.element_type() != img.element_type() ||
      (vertices && vertices->element_type() != img.element_type())) {
    return shape_error(op, "img, lut and vertices must share one dtype");
  }
  if (rank < 3 || idims[rank - 1] != 3) {
    return shape_error(op, "img must be (..., H, W, 3); got " + shapes);
  }
  if (static_cast<int64_t>(ldims.size()) != rank + 1) {
    return shape_error(op, "lut must be (..., 3, D, D, D) with img's leading dims; got " + shapes);
  }
  const int64_t nb = rank - 3;
  const int64_t d = ldims[nb + 3];
  if (ldims[nb] != 3 || ldims[nb + 1] != d || ldims[nb + 2] != d || d < 2) {
    return shape_error(op, "lut must be (..., 3, D, D, D) with D >= 2; got " + shapes);
  }
  int64_t batch = 1;
  for (int64_t i = 0; i < nb; ++i) {
    if (ldims[i] != idims[i]) return shape_error(op, "leading dims differ: " + shapes);
    batch *= idims[i];
  }
  if (vertices) {
    const auto vdims = vertices->dimensions();
    if (static_cast<int64_t>(vdims.size()) != nb + 2 || vdims[nb] != 3 || vdims[nb + 1] != d) {
      return shape_error(op, "vertices must be (..., 3, D) matching lut's D; got " + shapes);
    }
    for (int64_t i = 0; i < nb; ++i) {
      if (vdims[i] != idims[i]) return shape_error(op, "leading dims differ: " + shapes);
    }
  }
  // D^3 * 3 must index safely in int64 and the per-cell int arithmetic must not overflow.
  if (d > (1 << 10)) return shape_error(op, "D larger than 1024 is not supported; got " + shapes);
  p->batch = batch;
  p->pixels = idims[nb] * idims[nb + 1];
  p->d = d;
  p->dtype = img.element_type();
  return ffi::Error::Success();
}

// An output must have exactly the shape and dtype of the input it mirrors.
inline ffi::Error check_same(const char* op, const char* name, const ffi::AnyBuffer& like,
                             const ffi::AnyBuffer& out) {
  auto a = like.dimensions();
  auto b = out.dimensions();
  bool same = a.size() == b.size() && like.element_type() == out.element_type();
  for (size_t i = 0; same && i < a.size(); ++i) same = a[i] == b[i];
  if (!same) {
    return shape_error(op, std::string("output ") + name + " " + dims_str(out) +
                               " does not match input " + dims_str(like));
  }
  return ffi::Error::Success();
}

}  // namespace ailut
