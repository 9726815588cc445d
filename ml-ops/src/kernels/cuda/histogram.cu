// Gradient histograms of binned rows, the CPU twin being kernels/histogram.rs:
// for every listed row and every feature, the row's gradient and Hessian
// added into the slot of the row's code. codes: 1-byte codes row by row
// (`width` a row); rows: the node's row indices; gradients: (g, h) pairs of
// fixed-point 32-bit integers per row; hist: width × 256 slots of (g, h)
// 64-bit integers, added into. Integer atomics are exact: the sums are the
// CPU's bit for bit, whatever order the atomics land in.
// Block (x, y) takes a grid-stride share of the rows for feature y and sums
// it in shared memory first, so that global atomics are one per slot.
extern "C" __global__ void histogram_rows(
    const unsigned char* __restrict__ codes, int width,
    const unsigned int* __restrict__ rows, long long count,
    const int* __restrict__ gradients,
    long long* __restrict__ hist)
{
    __shared__ unsigned long long local[256 * 2];
    for (int s = threadIdx.x; s < 512; s += blockDim.x) {
        local[s] = 0ull;
    }
    __syncthreads();
    const int f = blockIdx.y;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        const long long r = rows[i];
        const int code = codes[r * width + f];
        // Two's complement: adding a negative as unsigned wraps to the sum.
        atomicAdd(&local[2 * code], (unsigned long long)(long long)gradients[2 * r]);
        atomicAdd(&local[2 * code + 1], (unsigned long long)(long long)gradients[2 * r + 1]);
    }
    __syncthreads();
    for (int s = threadIdx.x; s < 512; s += blockDim.x) {
        if (local[s] != 0ull) {
            atomicAdd((unsigned long long*)&hist[(long long)f * 512 + s], local[s]);
        }
    }
}
