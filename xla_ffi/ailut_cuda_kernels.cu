// CUDA kernels of the AiLUT / 3D-LUT transforms. The per-pixel arithmetic is the one in
// ailut_math.h, shared with the CPU kernels.
//
// Grid: blockIdx.y walks the batch, blockIdx.x (grid-stride) the pixels of one batch
// element, so a block's vertex rows can live in shared memory and its vertex
// gradients are reduced in shared memory before one global atomic per entry.
#include <algorithm>

#include "ailut_cuda.h"
#include "ailut_math.h"

namespace ailut {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocksX = 4096;
constexpr int kMaxBlocksY = 65535;

template <typename T>
__device__ __forceinline__ AxisPos<T> locate_axis(const T* v_shared, int d, int c, T x,
                                                  bool uniform) {
  return uniform ? locate_uniform<T>(d, x) : locate<T>(v_shared + c * d, d, x);
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ img, const T* __restrict__ lut,
                               const T* __restrict__ vertices, T* __restrict__ out, int64_t batch,
                               int64_t pixels, int d) {
  extern __shared__ unsigned char smem_raw[];
  T* v_shared = reinterpret_cast<T*>(smem_raw);
  const bool uniform = vertices == nullptr;
  const int64_t d3 = static_cast<int64_t>(d) * d * d;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    if (!uniform) {
      for (int i = threadIdx.x; i < 3 * d; i += blockDim.x) v_shared[i] = vertices[b * 3 * d + i];
    }
    __syncthreads();
    const T* lut_b = lut + b * 3 * d3;
    for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pixels;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = b * pixels + p;
      const T* px = img + 3 * i;
      const AxisPos<T> r = locate_axis(v_shared, d, 0, px[0], uniform);
      const AxisPos<T> g = locate_axis(v_shared, d, 1, px[1], uniform);
      const AxisPos<T> bl = locate_axis(v_shared, d, 2, px[2], uniform);
      T o[3];
      blend(lut_b, d, r, g, bl, o);
      out[3 * i] = o[0];
      out[3 * i + 1] = o[1];
      out[3 * i + 2] = o[2];
    }
    __syncthreads();  // v_shared is rewritten for the next batch element
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ g_out, const T* __restrict__ img,
                                const T* __restrict__ lut, const T* __restrict__ vertices,
                                T* __restrict__ d_img, T* __restrict__ d_lut,
                                T* __restrict__ d_vertices, int64_t batch, int64_t pixels, int d) {
  extern __shared__ unsigned char smem_raw[];
  T* v_shared = reinterpret_cast<T*>(smem_raw);
  T* dv_shared = v_shared + 3 * d;
  const bool uniform = vertices == nullptr;
  const int64_t d3 = static_cast<int64_t>(d) * d * d;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    if (!uniform) {
      for (int i = threadIdx.x; i < 3 * d; i += blockDim.x) {
        v_shared[i] = vertices[b * 3 * d + i];
        dv_shared[i] = T(0);
      }
    }
    __syncthreads();
    const T* lut_b = lut + b * 3 * d3;
    T* d_lut_b = d_lut + b * 3 * d3;
    for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pixels;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = b * pixels + p;
      const T* px = img + 3 * i;
      const AxisPos<T> pos[3] = {locate_axis(v_shared, d, 0, px[0], uniform),
                                 locate_axis(v_shared, d, 1, px[1], uniform),
                                 locate_axis(v_shared, d, 2, px[2], uniform)};
      const T go[3] = {g_out[3 * i], g_out[3 * i + 1], g_out[3 * i + 2]};
      T w[8], G[3];
      pixel_backward(lut_b, d, pos[0], pos[1], pos[2], go, w, G);
      const int64_t base = base_index(pos[0], pos[1], pos[2], static_cast<int64_t>(d));
      AILUT_UNROLL
      for (int c = 0; c < 3; ++c) {
        AILUT_UNROLL
        for (int k = 0; k < 8; ++k) {
          atomicAdd(d_lut_b + c * d3 + base + corner_offset(k, d), go[c] * w[k]);
        }
      }
      AILUT_UNROLL
      for (int c = 0; c < 3; ++c) {
        T dx, dv0, dv1;
        axis_grads(pos[c], G[c], &dx, &dv0, &dv1);
        d_img[3 * i + c] = dx;
        if (!uniform) {
          atomicAdd(dv_shared + c * d + pos[c].k, dv0);
          atomicAdd(dv_shared + c * d + pos[c].k + 1, dv1);
        }
      }
    }
    __syncthreads();
    if (!uniform) {
      for (int j = threadIdx.x; j < 3 * d; j += blockDim.x) {
        atomicAdd(d_vertices + b * 3 * d + j, dv_shared[j]);
      }
    }
    __syncthreads();
  }
}

dim3 grid_for(int64_t batch, int64_t pixels) {
  const int64_t bx =
      std::min<int64_t>(kMaxBlocksX, std::max<int64_t>(1, (pixels + kThreads - 1) / kThreads));
  const int64_t by = std::min<int64_t>(kMaxBlocksY, std::max<int64_t>(1, batch));
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
}

}  // namespace

template <typename T>
cudaError_t launch_forward(cudaStream_t stream, const T* img, const T* lut, const T* vertices,
                           T* out, int64_t batch, int64_t pixels, int d) {
  if (batch == 0 || pixels == 0) return cudaSuccess;
  const size_t smem = vertices ? 3 * d * sizeof(T) : 0;
  forward_kernel<T><<<grid_for(batch, pixels), kThreads, smem, stream>>>(img, lut, vertices, out,
                                                                         batch, pixels, d);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_backward(cudaStream_t stream, const T* g_out, const T* img, const T* lut,
                            const T* vertices, T* d_img, T* d_lut, T* d_vertices, int64_t batch,
                            int64_t pixels, int d) {
  const int64_t d3 = static_cast<int64_t>(d) * d * d;
  cudaError_t err = cudaMemsetAsync(d_lut, 0, batch * 3 * d3 * sizeof(T), stream);
  if (err == cudaSuccess && vertices) {
    err = cudaMemsetAsync(d_vertices, 0, batch * 3 * d * sizeof(T), stream);
  }
  if (err != cudaSuccess || batch == 0 || pixels == 0) return err;
  const size_t smem = vertices ? 6 * d * sizeof(T) : 0;
  backward_kernel<T><<<grid_for(batch, pixels), kThreads, smem, stream>>>(
      g_out, img, lut, vertices, d_img, d_lut, d_vertices, batch, pixels, d);
  return cudaGetLastError();
}

template cudaError_t launch_forward<float>(cudaStream_t, const float*, const float*, const float*,
                                           float*, int64_t, int64_t, int);
template cudaError_t launch_forward<double>(cudaStream_t, const double*, const double*,
                                            const double*, double*, int64_t, int64_t, int);
template cudaError_t launch_backward<float>(cudaStream_t, const float*, const float*, const float*,
                                            const float*, float*, float*, float*, int64_t, int64_t,
                                            int);
template cudaError_t launch_backward<double>(cudaStream_t, const double*, const double*,
                                             const double*, const double*, double*, double*,
                                             double*, int64_t, int64_t, int);

}  // namespace cuda
}  // namespace ailut
