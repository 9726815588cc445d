// Feature transforms on column-major float64 input (n rows, d columns), each
// writing the row-major vectors ember's feature functions return.
//
// affine_columns: out[i·d + j] = (x[j][i] − shift[j]) · scale[j]
//   (standard_scale: shift = mean, scale = 1/stddev; min_max_scale: shift =
//   min, scale = 1/(max − min)).
// polynomial_expand: out[i·terms + t] = Π_k x[factor[t·degree + k]][i], with
//   factor −1 meaning "no factor" (lower-degree terms).
// one_hot_expand: out[i·width + c] = (index[i] == c), index −1 for none; serves
//   one_hot (index = category) and feature_hash (index = bucket).
extern "C" __global__ void affine_columns(
    const double* __restrict__ x, long long n, int d,
    const double* __restrict__ shift, const double* __restrict__ scale,
    double* __restrict__ out)
{
    const long long total = n * d;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        // e walks the output row-major; read the input column-major.
        const long long i = e / d;
        const int j = (int)(e % d);
        out[e] = (x[(long long)j * n + i] - shift[j]) * scale[j];
    }
}

extern "C" __global__ void polynomial_expand(
    const double* __restrict__ x, long long n,
    const int* __restrict__ factor, int terms, int degree,
    double* __restrict__ out)
{
    const long long total = n * terms;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long i = e / terms;
        const int t = (int)(e % terms);
        double product = 1.0;
        for (int k = 0; k < degree; ++k) {
            const int f = factor[t * degree + k];
            if (f >= 0) product *= x[(long long)f * n + i];
        }
        out[e] = product;
    }
}

extern "C" __global__ void one_hot_expand(
    const int* __restrict__ index, long long n, int width, double* __restrict__ out)
{
    const long long total = n * width;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long i = e / width;
        const int c = (int)(e % width);
        out[e] = index[i] == c ? 1.0 : 0.0;
    }
}
