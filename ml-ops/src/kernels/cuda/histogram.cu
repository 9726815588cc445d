// Gradient histograms of binned rows, the CPU twin being kernels/histogram.rs:
// for every listed row and every feature, the row's gradient and Hessian
// added into the slot of the row's code. codes: 1-byte codes row by row
// (`width` a row); rows: the node's row indices; gradients: (g, h) float
// pairs per row; hist: width × 256 slots of (g, h) doubles, added into.
// Block (x, y) takes a grid-stride share of the rows for feature y and sums
// it in shared memory first, so that global atomics are one per slot.
extern "C" __global__ void histogram_rows(
    const unsigned char* __restrict__ codes, int width,
    const unsigned int* __restrict__ rows, long long count,
    const float* __restrict__ gradients,
    double* __restrict__ hist)
{
    __shared__ double local[256 * 2];
    for (int s = threadIdx.x; s < 512; s += blockDim.x) {
        local[s] = 0.0;
    }
    __syncthreads();
    const int f = blockIdx.y;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        const long long r = rows[i];
        const int code = codes[r * width + f];
        atomicAdd(&local[2 * code], (double)gradients[2 * r]);
        atomicAdd(&local[2 * code + 1], (double)gradients[2 * r + 1]);
    }
    __syncthreads();
    for (int s = threadIdx.x; s < 512; s += blockDim.x) {
        if (local[s] != 0.0) {
            atomicAdd(&hist[(long long)f * 512 + s], local[s]);
        }
    }
}
