// Shared by ember's kernels. NVRTC compiles each .cu with this prepended, so
// the sources need no include paths.
#define EMBER_FULL_MASK 0xffffffffu

// Sum of `value` over the block, returned by thread 0. `scratch` holds one
// double per warp.
__device__ double ember_block_sum(double value, double* scratch) {
    for (int offset = 16; offset > 0; offset /= 2) {
        value += __shfl_down_sync(EMBER_FULL_MASK, value, offset);
    }
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    if (lane == 0) {
        scratch[warp] = value;
    }
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0) {
        for (int w = 0; w < (blockDim.x + 31) / 32; ++w) {
            total += scratch[w];
        }
    }
    return total;
}
