/* The GEMM operators on cuBLAS: the pointwise convolution on a slice of a max-width weight, and the
 * classifier (backend.h pointwise_*, linear_*).
 *
 * cuBLAS is column-major; a row-major matrix [r x c] with leading dimension ld is the column-major
 * [c x r] with the same ld, so each product below is the row-major formula read transposed.
 *
 * Pointwise: per image n, y_n [cout x hw] = W [cout x cin, ld ldw] x_n [cin x hw].
 *   forward and dx: ONE strided-batched GEMM over the images (stride 0 for the weight, which every image
 *     shares), on the tensors and the weight slice in place: no packing of the slice (cuBLAS reads it
 *     through ldw), no copy of the activations. The alternative, packing the slice into a contiguous
 *     [cout x cin] first, saves nothing here: cuBLAS handles any leading dimension at full speed and the
 *     slice would still be read once per image tile. The epilogue (folded BN, ReLU) is a separate
 *     element-wise kernel after the GEMM (kernels/pointwise.cu).
 *   dw: a sum over images. A strided-batched GEMM would need one [cout x cin] output per image and a
 *     reduction after it; a loop of per-image GEMMs with beta = 1 runs them one after another, each too
 *     small (cin x cout x 49 at 7x7) to fill the GPU. Instead x and dy are transposed to channel-major
 *     [c, n * hw] in the workspace (kernels/pointwise.cu, (cin + cout) * n * hw floats moved) and dw is ONE
 *     GEMM with the inner dimension n * hw. For a single image the tensors are already in that layout.
 *   These choices are reasoned, not measured: no GPU was available when they were made (docs/benchmarks.md).
 * Linear: y [n x out] = x [n x in] W^T (+ b), one GEMM per product; the bias is broadcast into y first
 * and the GEMM adds (as the CPU backend), its gradient is a column sum (kernels/linear.cu).
 * cuBLAS runs in CUBLAS_DEFAULT_MATH (set at init): float32 FMA, no TF32. */
#include <assert.h>

#include "cuda_internal.h"
#include "kernels.h"

static const float one = 1.0f, zero = 0.0f;

/* x [n, cin, hw], w [cout rows of ldw floats] -> y [n, cout, hw], then the optional epilogue. */
void hsc_cuda_pointwise_forward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                const float *w, float *y) {
  assert(d->n >= 0 && d->cin > 0 && d->cout > 0 && d->hw > 0 && d->ldw >= d->cin);
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0) return;
  /* column-major: y_n^T [hw x cout] = x_n^T [hw x cin] * (W^T [cin x cout], ld ldw) */
  HSC_CHECK_CUBLAS(cublasSgemmStridedBatched(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, d->hw, d->cout, d->cin,
                                             &one, x, d->hw, (long long)d->cin * d->hw, w, d->ldw, 0, &zero,
                                             y, d->hw, (long long)d->cout * d->hw, d->n));
  if (d->scale)
    HSC_CHECK_LAUNCH(hsc_k_channel_affine(c->stream, d->n, d->cout, d->hw, d->scale, d->shift, d->relu, y));
}

/* dy [n, cout, hw]; dx [n, cin, hw] (+)= W^T dy_n (= when dx_assign); dw [cout x cin slice, ld ldw] +=
 * sum_n dy_n x_n^T. NULL gradients are skipped. */
void hsc_cuda_pointwise_backward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                 const float *w, const float *dy, float *dx, float *dw) {
  assert(d->n >= 0 && d->cin > 0 && d->cout > 0 && d->hw > 0 && d->ldw >= d->cin);
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0) return;
  if (dx) {
    /* column-major: dx_n^T [hw x cin] (+)= dy_n^T [hw x cout] * W [cout x cin] (the stored [cin x cout]
     * transposed) */
    const float *beta = d->dx_assign ? &zero : &one;
    HSC_CHECK_CUBLAS(cublasSgemmStridedBatched(c->cublas, CUBLAS_OP_N, CUBLAS_OP_T, d->hw, d->cin, d->cout,
                                               &one, dy, d->hw, (long long)d->cout * d->hw, w, d->ldw, 0,
                                               beta, dx, d->hw, (long long)d->cin * d->hw, d->n));
  }
  if (dw) {
    const int k = d->n * d->hw;
    const float *xs = x, *dys = dy;
    if (d->n > 1) {
      float *t = hsc_cuda_workspace(c, ((size_t)d->cin + d->cout) * (size_t)k * sizeof(float));
      HSC_CHECK_LAUNCH(hsc_k_nchw_to_cn(c->stream, d->n, d->cin, d->hw, x, t));
      HSC_CHECK_LAUNCH(hsc_k_nchw_to_cn(c->stream, d->n, d->cout, d->hw, dy, t + (size_t)d->cin * k));
      xs = t;
      dys = t + (size_t)d->cin * k;
    }
    /* column-major: (dw^T [cin x cout], ld ldw) += X [k x cin]^T * DY [k x cout], X and DY the channel-major
     * [c, n * hw] tensors read column-major */
    HSC_CHECK_CUBLAS(cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, d->cin, d->cout, k, &one, xs, k, dys, k,
                                 &one, dw, d->ldw));
  }
}

/* x [n, in], w [out, in], b [out] or NULL -> y [n, out]. */
void hsc_cuda_linear_forward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                             const float *b, float *y) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0) return;
  if (b) HSC_CHECK_LAUNCH(hsc_k_rows_set(c->stream, d->n, d->out, b, y));
  /* column-major: y^T [out x n] = W [out x in] (the stored [in x out] transposed) * x^T [in x n] */
  HSC_CHECK_CUBLAS(cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, d->out, d->n, d->in, &one, w, d->in, x,
                               d->in, b ? &one : &zero, y, d->out));
}

/* dy [n, out]; dx [n, in], dw [out, in], db [out] accumulate (+=); NULL ones are skipped. */
void hsc_cuda_linear_backward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0) return;
  /* column-major: dx^T [in x n] += W^T [in x out] * dy^T [out x n] */
  if (dx)
    HSC_CHECK_CUBLAS(cublasSgemm(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, d->in, d->n, d->out, &one, w, d->in, dy,
                                 d->out, &one, dx, d->in));
  /* column-major: dw^T [in x out] += x^T [in x n] * dy [n x out] */
  if (dw)
    HSC_CHECK_CUBLAS(cublasSgemm(c->cublas, CUBLAS_OP_N, CUBLAS_OP_T, d->in, d->out, d->n, &one, x, d->in, dy,
                                 d->out, &one, dw, d->in));
  if (db) HSC_CHECK_LAUNCH(hsc_k_colsum_add(c->stream, d->n, d->out, dy, db));
}
