// Host-callable launchers of the AiLUT / 3D-LUT CUDA kernels. Only the .cu file is
// compiled by nvcc; the FFI handlers (ailut_cuda.cc) are plain host C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ailut {
namespace cuda {

// vertices == nullptr selects the uniform 3D-LUT (cells computed, no vertex gradient).
// img/out/g_out/d_img: (batch, pixels, 3); lut/d_lut: (batch, 3, d, d, d);
// vertices/d_vertices: (batch, 3, d).
template <typename T>
cudaError_t launch_forward(cudaStream_t stream, const T* img, const T* lut, const T* vertices,
                           T* out, int64_t batch, int64_t pixels, int d);

// d_lut and d_vertices are accumulated with atomics: they are zeroed on `stream` first.
template <typename T>
cudaError_t launch_backward(cudaStream_t stream, const T* g_out, const T* img, const T* lut,
                            const T* vertices, T* d_img, T* d_lut, T* d_vertices, int64_t batch,
                            int64_t pixels, int d);

}  // namespace cuda
}  // namespace ailut
