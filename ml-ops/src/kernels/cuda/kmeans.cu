// k-means on column-major x (n rows, d features).
//
// kmeans_assign: each row's nearest of k centroids (row-major k × d; ties go to
// the lower index), its squared distance, and optionally its Euclidean distance
// to `measure[best]`. Shared memory: k·d centroid values and k·blockDim partial
// distances, so the row is read once, feature by feature, coalesced.
//
// kmeans_sums: per centroid c and column col, Σ over rows assigned to c of
// col(i), where col < d is feature col and d, d+1, d+2 are 1, the squared
// distance and the measured distance: sums, counts, inertia and the
// Davies-Bouldin distances in one launch. Tiled through shared memory like
// gram_pairs; one output per thread per grid row.
extern "C" __global__ void kmeans_assign(
    const double* __restrict__ x, long long n, int d,
    const double* __restrict__ centroids, int k,
    const double* __restrict__ measure, int has_measure,
    int* __restrict__ assign, double* __restrict__ squared, double* __restrict__ measured)
{
    extern __shared__ double shared[];
    double* centres = shared;
    double* dist = shared + (size_t)k * d;
    for (int idx = threadIdx.x; idx < k * d; idx += blockDim.x) {
        centres[idx] = centroids[idx];
    }
    __syncthreads();
    const int t = threadIdx.x;
    const int threads = blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        for (int c = 0; c < k; ++c) dist[c * threads + t] = 0.0;
        for (int j = 0; j < d; ++j) {
            const double value = x[(long long)j * n + i];
            for (int c = 0; c < k; ++c) {
                const double diff = value - centres[c * d + j];
                dist[c * threads + t] += diff * diff;
            }
        }
        int best = 0;
        double best_dist = dist[t];
        for (int c = 1; c < k; ++c) {
            const double candidate = dist[c * threads + t];
            if (candidate < best_dist) {
                best = c;
                best_dist = candidate;
            }
        }
        assign[i] = best;
        squared[i] = best_dist;
        if (has_measure) {
            double sum = 0.0;
            for (int j = 0; j < d; ++j) {
                const double diff = x[(long long)j * n + i] - measure[best * d + j];
                sum += diff * diff;
            }
            measured[i] = sqrt(sum);
        }
    }
}

extern "C" __global__ void kmeans_sums(
    const double* __restrict__ x, long long n, int d,
    const int* __restrict__ assign, const double* __restrict__ squared,
    const double* __restrict__ measured, int has_measure,
    int k, int tile, double* __restrict__ out)
{
    extern __shared__ double shared[];
    const int stride = tile + 1;
    const int cols = d + 3;
    int* owner = (int*)(shared + (size_t)cols * stride);
    const int output = blockIdx.y * blockDim.x + threadIdx.x;
    const int c = output / cols;
    const int col = output % cols;
    const bool active = c < k;
    double acc = 0.0;
    for (long long row0 = (long long)blockIdx.x * tile; row0 < n;
         row0 += (long long)gridDim.x * tile) {
        for (int idx = threadIdx.x; idx < cols * tile; idx += blockDim.x) {
            const int j = idx / tile;
            const int r = idx % tile;
            const long long i = row0 + r;
            double value = 0.0;
            if (i < n) {
                if (j < d) value = x[(long long)j * n + i];
                else if (j == d) value = 1.0;
                else if (j == d + 1) value = squared[i];
                else value = has_measure ? measured[i] : 0.0;
            }
            shared[j * stride + r] = value;
        }
        for (int r = threadIdx.x; r < tile; r += blockDim.x) {
            const long long i = row0 + r;
            owner[r] = i < n ? assign[i] : -1;
        }
        __syncthreads();
        if (active) {
            const double* column = shared + col * stride;
            for (int r = 0; r < tile; ++r) {
                acc += owner[r] == c ? column[r] : 0.0;
            }
        }
        __syncthreads();
    }
    if (active) {
        // Layout of the CPU kernel: [sums k×d | counts k | squared k | measured k].
        const int slot = col < d ? c * d + col : k * d + (col - d) * k + c;
        atomicAdd(out + slot, acc);
    }
}
