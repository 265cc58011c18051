// CUDA FFI handlers of the AiLUT and 3D-LUT transforms and the nanobind module that
// exports them. Host C++ only: the kernels are in ailut_cuda_kernels.cu.
#include "ailut_cuda.h"

#include <cuda_runtime_api.h>

#include <string>

#include "ailut_shapes.h"
#include "nanobind/nanobind.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace ailut {
namespace {

ffi::Error cuda_status(const char* op, cudaError_t err) {
  if (err == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string(op) + ": CUDA error: " + cudaGetErrorString(err));
}

ffi::Error ForwardImpl(const char* op, cudaStream_t stream, const ffi::AnyBuffer& img,
                       const ffi::AnyBuffer& lut, const ffi::AnyBuffer* vertices,
                       ffi::AnyBuffer out) {
  Problem p;
  if (auto e = check_problem(op, img, lut, vertices, &p); e.failure()) return e;
  if (auto e = check_same(op, "out", img, out); e.failure()) return e;
  const int d = static_cast<int>(p.d);
  cudaError_t err;
  if (p.dtype == ffi::DataType::F32) {
    err = cuda::launch_forward<float>(stream, img.typed_data<float>(), lut.typed_data<float>(),
                                      vertices ? vertices->typed_data<float>() : nullptr,
                                      out.typed_data<float>(), p.batch, p.pixels, d);
  } else {
    err = cuda::launch_forward<double>(stream, img.typed_data<double>(), lut.typed_data<double>(),
                                       vertices ? vertices->typed_data<double>() : nullptr,
                                       out.typed_data<double>(), p.batch, p.pixels, d);
  }
  return cuda_status(op, err);
}

ffi::Error BackwardImpl(const char* op, cudaStream_t stream, const ffi::AnyBuffer& g_out,
                        const ffi::AnyBuffer& img, const ffi::AnyBuffer& lut,
                        const ffi::AnyBuffer* vertices, ffi::AnyBuffer d_img, ffi::AnyBuffer d_lut,
                        ffi::AnyBuffer* d_vertices) {
  Problem p;
  if (auto e = check_problem(op, img, lut, vertices, &p); e.failure()) return e;
  if (auto e = check_same(op, "g_out", img, g_out); e.failure()) return e;
  if (auto e = check_same(op, "d_img", img, d_img); e.failure()) return e;
  if (auto e = check_same(op, "d_lut", lut, d_lut); e.failure()) return e;
  if (vertices) {
    if (auto e = check_same(op, "d_vertices", *vertices, *d_vertices); e.failure()) return e;
  }
  const int d = static_cast<int>(p.d);
  cudaError_t err;
  if (p.dtype == ffi::DataType::F32) {
    err = cuda::launch_backward<float>(
        stream, g_out.typed_data<float>(), img.typed_data<float>(), lut.typed_data<float>(),
        vertices ? vertices->typed_data<float>() : nullptr, d_img.typed_data<float>(),
        d_lut.typed_data<float>(), vertices ? d_vertices->typed_data<float>() : nullptr, p.batch,
        p.pixels, d);
  } else {
    err = cuda::launch_backward<double>(
        stream, g_out.typed_data<double>(), img.typed_data<double>(), lut.typed_data<double>(),
        vertices ? vertices->typed_data<double>() : nullptr, d_img.typed_data<double>(),
        d_lut.typed_data<double>(), vertices ? d_vertices->typed_data<double>() : nullptr, p.batch,
        p.pixels, d);
  }
  return cuda_status(op, err);
}

ffi::Error AilutForwardImpl(cudaStream_t stream, ffi::AnyBuffer img, ffi::AnyBuffer lut,
                            ffi::AnyBuffer vertices, ffi::Result<ffi::AnyBuffer> out) {
  return ForwardImpl("ailut_forward", stream, img, lut, &vertices, *out);
}

ffi::Error AilutBackwardImpl(cudaStream_t stream, ffi::AnyBuffer g_out, ffi::AnyBuffer img,
                             ffi::AnyBuffer lut, ffi::AnyBuffer vertices,
                             ffi::Result<ffi::AnyBuffer> d_img, ffi::Result<ffi::AnyBuffer> d_lut,
                             ffi::Result<ffi::AnyBuffer> d_vertices) {
  ffi::AnyBuffer dv = *d_vertices;
  return BackwardImpl("ailut_backward", stream, g_out, img, lut, &vertices, *d_img, *d_lut, &dv);
}

ffi::Error LutForwardImpl(cudaStream_t stream, ffi::AnyBuffer img, ffi::AnyBuffer lut,
                          ffi::Result<ffi::AnyBuffer> out) {
  return ForwardImpl("lut_forward", stream, img, lut, nullptr, *out);
}

ffi::Error LutBackwardImpl(cudaStream_t stream, ffi::AnyBuffer g_out, ffi::AnyBuffer img,
                           ffi::AnyBuffer lut, ffi::Result<ffi::AnyBuffer> d_img,
                           ffi::Result<ffi::AnyBuffer> d_lut) {
  return BackwardImpl("lut_backward", stream, g_out, img, lut, nullptr, *d_img, *d_lut, nullptr);
}

}  // namespace
}  // namespace ailut

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutForwardCuda, ailut::AilutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()    // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>());  // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(AilutBackwardCuda, ailut::AilutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()    // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Arg<ffi::AnyBuffer>()    // vertices (..., 3, D)
                                  .Ret<ffi::AnyBuffer>()    // d_img
                                  .Ret<ffi::AnyBuffer>()    // d_lut
                                  .Ret<ffi::AnyBuffer>());  // d_vertices

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutForwardCuda, ailut::LutForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>());  // out (..., H, W, 3)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LutBackwardCuda, ailut::LutBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()    // g_out (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // img (..., H, W, 3)
                                  .Arg<ffi::AnyBuffer>()    // lut (..., 3, D, D, D)
                                  .Ret<ffi::AnyBuffer>()    // d_img
                                  .Ret<ffi::AnyBuffer>());  // d_lut

NB_MODULE(_ailut_cuda, m) {
  m.doc() = "XLA FFI CUDA handlers of the AiLUT and 3D-LUT transforms";
  m.def("registrations", []() {
    nb::dict d;
    d["ailut_forward"] = nb::capsule(reinterpret_cast<void*>(AilutForwardCuda));
    d["ailut_backward"] = nb::capsule(reinterpret_cast<void*>(AilutBackwardCuda));
    d["lut_forward"] = nb::capsule(reinterpret_cast<void*>(LutForwardCuda));
    d["lut_backward"] = nb::capsule(reinterpret_cast<void*>(LutBackwardCuda));
    return d;
  });
  m.def("cuda_device_count", []() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
  });
}
