// Per-row logistic terms at given weights: the summed log-loss, the residual
// p − y and the curvature p(1 − p) that gram_pairs turns into the gradient
// and the Hessian XᵀWX. x is column-major (n rows, d features); weights has
// d + 1 values, the intercept last. One thread per row, grid-stride.
__device__ double ember_softplus(double z) {
    return z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

__device__ double ember_sigmoid(double z) {
    if (z >= 0.0) {
        return 1.0 / (1.0 + exp(-z));
    }
    const double e = exp(z);
    return e / (1.0 + e);
}

extern "C" __global__ void logistic_rows(
    const double* __restrict__ x, const double* __restrict__ y, long long n, int d,
    const double* __restrict__ weights,
    double* __restrict__ residual, double* __restrict__ curvature,
    double* __restrict__ loss)
{
    __shared__ double scratch[32];
    double local = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double z = weights[d];
        for (int j = 0; j < d; ++j) {
            z += weights[j] * x[(long long)j * n + i];
        }
        const double p = ember_sigmoid(z);
        local += ember_softplus(z) - y[i] * z;
        residual[i] = p - y[i];
        curvature[i] = p * (1.0 - p);
    }
    const double total = ember_block_sum(local, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(loss, total);
    }
}
