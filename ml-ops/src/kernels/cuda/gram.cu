// Sums of products of column pairs, the core of XᵀX, Xᵀy, XᵀWX and Xᵀr.
//
// The columns are virtual: c < d is feature c of `x` (column-major, n rows),
// c == d is the intercept's 1, c == d + 1 is `v`. Output p is
//   out[p] += Σ_i col(a_p)[i] · col(b_p)[i] · (w[i] if b_p <= d and w given)
// so one launch gives a weighted Gram matrix and unweighted cross products.
// Accumulated in float64; each block adds its partial sums with atomicAdd.
//
// Grid: x strides over row tiles, y over chunks of PAIRS_PER_THREAD·blockDim
// pairs. Shared memory: (d + 3) · (tile + 1) doubles (the +1 pads against
// bank conflicts; the last row of the tile holds the weights).
#define PAIRS_PER_THREAD 4

extern "C" __global__ void gram_pairs(
    const double* __restrict__ x, long long n, int d,
    const double* __restrict__ w, int has_w,
    const double* __restrict__ v, int has_v,
    const int* __restrict__ pairs, int npairs, int tile,
    double* __restrict__ out)
{
    extern __shared__ double shared[];
    const int stride = tile + 1;
    const int cols = d + 2;
    double* weights = shared + (size_t)cols * stride;

    int a[PAIRS_PER_THREAD];
    int b[PAIRS_PER_THREAD];
    double acc[PAIRS_PER_THREAD];
    #pragma unroll
    for (int s = 0; s < PAIRS_PER_THREAD; ++s) {
        const int p = (blockIdx.y * PAIRS_PER_THREAD + s) * blockDim.x + threadIdx.x;
        a[s] = p < npairs ? pairs[2 * p] : -1;
        b[s] = p < npairs ? pairs[2 * p + 1] : -1;
        acc[s] = 0.0;
    }

    for (long long row0 = (long long)blockIdx.x * tile; row0 < n;
         row0 += (long long)gridDim.x * tile) {
        for (int idx = threadIdx.x; idx < cols * tile; idx += blockDim.x) {
            const int c = idx / tile;
            const int r = idx % tile;
            const long long i = row0 + r;
            double value = 0.0;
            if (i < n) {
                value = c < d ? x[(long long)c * n + i] : (c == d ? 1.0 : (has_v ? v[i] : 0.0));
            }
            shared[c * stride + r] = value;
        }
        for (int r = threadIdx.x; r < tile; r += blockDim.x) {
            const long long i = row0 + r;
            weights[r] = i < n ? (has_w ? w[i] : 1.0) : 0.0;
        }
        __syncthreads();
        #pragma unroll
        for (int s = 0; s < PAIRS_PER_THREAD; ++s) {
            if (a[s] >= 0) {
                const double* ca = shared + a[s] * stride;
                const double* cb = shared + b[s] * stride;
                double sum = 0.0;
                if (b[s] <= d && has_w) {
                    for (int r = 0; r < tile; ++r) sum += ca[r] * cb[r] * weights[r];
                } else {
                    for (int r = 0; r < tile; ++r) sum += ca[r] * cb[r];
                }
                acc[s] += sum;
            }
        }
        __syncthreads();
    }
    #pragma unroll
    for (int s = 0; s < PAIRS_PER_THREAD; ++s) {
        if (a[s] >= 0) {
            const int p = (blockIdx.y * PAIRS_PER_THREAD + s) * blockDim.x + threadIdx.x;
            atomicAdd(out + p, acc[s]);
        }
    }
}
