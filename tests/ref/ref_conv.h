/* ref_conv.h — naive float64 references for conv2d and SGEMM, written from the definitions (PyTorch
 * nn.Conv2d semantics, BLAS sgemm semantics); they share no code with src/. */
#ifndef CNN_REF_CONV_H
#define CNN_REF_CONV_H

#include <stddef.h>

typedef struct ref_conv2d {
    size_t c, h, w;          /* input channels, height, width */
    size_t k;                /* output channels */
    size_t kh, kw;           /* kernel */
    size_t sh, sw;           /* strides */
    size_t pt, pb, pl, pr;   /* zero padding: top, bottom, left, right */
    size_t dh, dw;           /* dilation */
    size_t groups;
} ref_conv2d;

/* Output length along one axis: floor((len + p0 + p1 - dil*(k-1) - 1) / stride) + 1, or 0 when the
 * dilated kernel does not fit the padded input. */
size_t ref_conv_out_len(size_t len, size_t k, size_t stride, size_t p0, size_t p1, size_t dil);
/* TF/PyTorch "same": out = ceil(len / stride), total padding max((out-1)*stride + dil*(k-1) + 1 - len, 0),
 * *p0 = total / 2 (top/left), *p1 = the rest (bottom/right). */
void ref_conv_same_pad(size_t len, size_t k, size_t stride, size_t dil, size_t *p0, size_t *p1);

/* y[n][k][oh][ow] = b[o] + sum over the group's input channels and the kernel of w[o][c][i][j] * x (zero
 * outside the image). x: n*c*h*w, w: k*(c/groups)*kh*kw (OIHW), b: k or NULL. */
void ref_conv2d_forward(const ref_conv2d *p, size_t n, const double *x, const double *w, const double *b,
                        double *y);

/* out[M][N] = alpha * op(A) op(B) + beta * C (C ignored when beta == 0), all row-major with leading
 * dimensions; op(A) = A[M][K] (lda) or A^T with A[K][M]; op(B) = B[K][N] (ldb) or B^T with B[N][K].
 * out has N columns (leading dimension N). abs_out (may be NULL) gets |alpha| * sum |a*b| + |beta * c|, the
 * scale against which rounding errors are measured. */
void ref_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, double alpha, const float *A, size_t lda,
              const float *B, size_t ldb, double beta, const float *C, size_t ldc, double *out, double *abs_out);

#endif
