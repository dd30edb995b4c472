#ifndef MCL_CDIRECTCONV_H
#define MCL_CDIRECTCONV_H
/* Direct 3x3, stride-1, pad-1 convolution kernels for CNHW activations ([C][N][H][W]) whose
 * rows are 16 or 32 floats wide: the small-channel layers of the CIFAR ResNets, where im2col +
 * GEMM and Winograd's 16 small GEMMs reach a fraction of the FMA peak (docs/performance.md).
 *
 * Written in C because Swift cannot compile one function for AVX-512 and another for AVX2 in the
 * same binary and pick one at run time: each kernel here is compiled twice with GCC/Clang
 * vector extensions under `__attribute__((target(...)))` and `mcl_dconv_isa` chooses.
 *
 * The kernels pad each image (or block of images) of their input by one zero pixel into a
 * per-thread `scratch` buffer that stays in cache, so that the inner loops have no border branches. */

/* 2 = AVX-512F, 1 = AVX2 + FMA, 0 = neither (the caller keeps its other algorithms). */
int mcl_dconv_isa(void);
/* Uses the kernels of `level` (at most what the CPU has) from now on: tests of the AVX2 kernels. */
void mcl_dconv_force_isa(int level);

/* Images per block of the weight gradient (its scratch holds that many padded images). */
int mcl_dconv_block_images(int cin, int cout, int h, int w);

/* y[co][n][oh][ow] (= or +=) sum_{ci,i,j} wt[co][ci][i][j] xp[ci][n][oh+i][ow+j], images [n0, n1),
 * xp = x padded by one zero pixel. w must be 16 or 32; scratch holds cin*(h+2)*(w+2) floats. */
void mcl_dconv_forward(const float *x, int cin, int n, int h, int w, const float *wt, int cout,
                       float *y, int accumulate, int n0, int n1, float *scratch);

/* acc[co][ci][i][j][16] += lanes of sum over images [n0, n1) of dy[co][n][oh][ow] xp[ci][n][oh+i][ow+j];
 * the 16 lanes of acc are summed by the caller (`mcl_dconv_reduce`). acc holds cout*cin*9*16 floats,
 * scratch mcl_dconv_block_images(...) * cin*(h+2)*(w+2). */
void mcl_dconv_weight_grad(const float *x, int cin, int n, int h, int w, const float *dy, int cout,
                           float *acc, int n0, int n1, float *scratch);

/* dw[k] += sum of the 16 lanes of acc[k][16], k < count. */
void mcl_dconv_reduce(const float *acc, int count, float *dw);

/* Direct 3x3 stride-2 pad-1 convolution of (2 wo)^2 inputs to wo x wo outputs, wo = 16 or 8,
 * AVX2 + FMA (`direct_conv_s2.c`), images [n0, n1). Forward: y (= or +=) conv(x, wt), wt OIHW,
 * scratch mcl_dconv_s2_forward_scratch floats. dX: dx (= or +=) from dy with the weights
 * rearranged by mcl_dconv_s2_dx_weights (9*cin*cout floats), scratch mcl_dconv_s2_data_scratch.
 * dW: acc[co][ci][i][j][16] += lanes (as mcl_dconv_weight_grad), scratch mcl_dconv_s2_weight_scratch. */
int mcl_dconv_s2_forward_scratch(int cin, int wo);
void mcl_dconv_s2_forward(const float *x, int cin, int n, int wo, const float *wt, int cout, float *y,
                          int accumulate, int n0, int n1, float *scratch);
int mcl_dconv_s2_dx_weights_count(int cin, int cout);
void mcl_dconv_s2_dx_weights(const float *wt, int cout, int cin, float *wph);
int mcl_dconv_s2_data_scratch(int cin, int cout, int wo);
void mcl_dconv_s2_data_grad(const float *dy, int cout, int n, int wo, const float *wph, int cin, float *dx,
                            int accumulate, int n0, int n1, float *scratch);
int mcl_dconv_s2_block_images(int cin, int cout, int wo);
int mcl_dconv_s2_weight_scratch(int cin, int cout, int wo);
void mcl_dconv_s2_weight_grad(const float *x, int cin, int n, int wo, const float *dy, int cout, float *accm,
                              int n0, int n1, float *scratch);

/* Stride-2 im2col / col2im (3x3 pad 1 or 1x1 pad 0, k = 3 or 1) for input channels [c0, c1) of
 * images [n0, n0 + cn) of x ([C][N][H][W]); ho = floor((h + 2p - k) / 2) + 1, likewise wo. col rows are
 * (ci, i, j) of cn*ho*wo columns, as `Conv2d.im2col` lays them out; col2im adds into dx. `buf`
 * holds mcl_im2col_s2_buffer(k, wo) floats (a padded row; one per thread). */
int mcl_im2col_s2_buffer(int k, int wo);
void mcl_im2col_s2(const float *x, int c0, int c1, int k, int n, int h, int w, int n0, int cn, int ho, int wo,
                   float *col, float *buf);
void mcl_col2im_s2(const float *col, int c0, int c1, int k, int n, int h, int w, int n0, int cn, int ho, int wo,
                   float *dx, float *buf);

/* Floats between consecutive planes of the Winograd transforms' v and m ([planes][channels][tb]):
 * channels * tb + 16. Without the extra cache line, planes 256 * tb bytes apart (64 channels, tb a
 * multiple of 16) are a multiple of 4 KB apart, so the 16 or 36 stores of one tile, one per plane,
 * all fall into the same L1 set. */
long mcl_wino_plane(int channels, int tb);
/* The same for the transformed kernels U ([planes][rows][cols], `mcl_wino_weights`) and dW's dU:
 * rows * cols + 16 (e.g. 64 x 64 kernels: planes 16 KB apart otherwise). */

/* Winograd F(2x2, 3x3) transforms (`MCLNet.Winograd`) of tile rows [r0, r1) (n * h/2 rows of w/2
 * tiles; h, w even): input x -> v[16][channels][tb] (planes `mcl_wino_plane` apart) (`pad`: 5 * (w + 2) floats); output
 * m[16][channels][tb] -> y (= or +=; `tmp`: 4 * w floats); grad: dy -> m[16][channels][tb], the
 * adjoint of the output transform (`tmp`: 4 * w floats). tb = (r1 - r0) * w/2. */
void mcl_wino2_input(const float *x, int channels, int n, int h, int w, int r0, int r1, float *v, int tb, float *pad);
void mcl_wino2_output(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb, float *y,
                      int accumulate, float *tmp);
void mcl_wino2_grad(const float *dy, int channels, int n, int h, int w, int r0, int r1, float *m, int tb, float *tmp);

/* Winograd F(4x4, 3x3) transforms (`MCLNet.Winograd4`) of tile rows [r0, r1) (n * h/4 rows of
 * w/4 tiles; h, w multiples of 4): input x ([C][N][H][W]) -> v[36][channels][tb] (planes `mcl_wino_plane` apart), with `pad`
 * holding 7 * (w + 2) floats; output m[36][channels][tb] -> y tiles (= or += with `accumulate`),
 * `tmp` holding 6 * w floats. tb = the block's tiles, (r1 - r0) * w/4. */
void mcl_wino4_input(const float *x, int channels, int n, int h, int w, int r0, int r1, float *v, int tb, float *pad);
/* F(4x4) on 4x4 maps, tile rows (images) [r0, r1): the input (V of x) and output (y = or +=
 * A^T M A) transforms of the 16-image kernels, of the spatially flipped images with `flip` (dX
 * from the forward's kernels: dX = flip(conv(flip(dY), W^T))). */
void mcl_wino4_single_input(const float *x, int channels, int n, int r0, int r1, float *v, int tb, int flip);
void mcl_wino4_single_output(const float *m, int channels, int n, int r0, int r1, int tb, float *y, int accumulate, int flip);
void mcl_wino4_output(const float *m, int channels, int n, int h, int w, int r0, int r1, int tb, float *y,
                      int accumulate, float *tmp);
/* dW's gradient transform for F(4x4): dy -> m[36][channels][tb], m = A dY A^T per tile (the adjoint
 * of the output transform; `tmp`: 6 * w floats). */
void mcl_wino4_grad(const float *dy, int channels, int n, int h, int w, int r0, int r1, float *m, int tb, float *tmp);

/* Winograd weight transforms, rows [r0, r1) of U (rows = cout, or cin with `flip`; planes
 * `mcl_wino_plane(rows, cols)` apart): U[e][r][c] =
 * (G g G^T)[e] with g = w[r][c] ([cout][cin][3][3]), or with `flip` the flipped w[c][r] (the
 * kernel of dX); tile = 2 (16 planes) or 4 (36 planes). */
void mcl_wino_weights(const float *w, int cout, int cin, int flip, int tile, float *u, int r0, int r1);
/* dw[idx][0..<9] += G^T D G with D[e] = sum over k < workers of du[k * stride + e * plane + idx]
 * (in order), for idx in [i0, i1): the weight gradient from its (tile + 2)^2 planes (tile 2:
 * F(2x2)'s 16, tile 4: F(4x4)'s 36). */
void mcl_wino_weight_grad(const float *du, long stride, int workers, long plane, long i0, long i1, int tile,
                          float *dw);

/* BatchNorm passes over one channel's m values (batchnorm.c). backward_sums: with `relu` (the
 * layer's output, or NULL) dy is masked in place where relu <= 0; *sd = sum dy, *sdx = sum dy (x - mu).
 * backward_dx: dx = k (dy - mdb - (x - mu) inv mdg). shifted_sums: *s1 = sum (x - k), *s2 = sum (x - k)^2. apply: y = x a + o (+ residual) (ReLU'd). */
void mcl_bn_backward_sums(const float *x, float *dy, const float *relu, long m, float mu, double *sd, double *sdx);
void mcl_bn_backward_dx(const float *x, const float *dy, float *dx, long m, float mu, float inv, float k,
                        float mdb, float mdg);
void mcl_bn_shifted_sums(const float *x, long m, float k, double *s1, double *s2);
void mcl_bn_apply(const float *x, float *y, const float *residual, long m, float a, float o, int relu);
#endif
