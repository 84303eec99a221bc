/* The EXACT quadrature of _exact_quadrature.py fused into one pass per row (CPU).

   Same integral, same rule: log P = log int h(t) dt with h(t) = Phi(-t) F(t) S(t) (the density of
   the rivals' maximum times the true class's factor), Newton's method for the mode of log h,
   secant probes at mu -+ 4.5 tau for one scale per side, a half-range Gauss-Hermite rule on each
   side, and d log P / d m_j integrated at the same nodes.  Per row everything stays in cache
   (the node terms are K x R values), so the cost is one erfc, one exp and a division per
   (node, rival) term, vectorised by the compiler with glibc's libmvec (log F is the log of the
   product of Phi, once per node, where that product stays a normal double), and no per-op
   overhead.  Rows are independent: split between OpenMP threads, with the same bits whatever
   the split.

   Compiled twice from this file, with REAL = float and REAL = double (see _exact_native.py);
   the Python side computes the rule's tables and checks the arguments.  Notation as there:
   x = -u / sqrt2 with u = t + m_j, Phi(u) = erfc(x) / 2, lam(u) = phi(u) / Phi(u).
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef REAL_DOUBLE
typedef double REAL;
#define ERFC erfc
#define EXP exp
#define LOG log
#define SUFFIX(name) name##_f64
#define SATURATED -26.5 /* erfc(x) = 2 below; exp(-x^2) stays a normal float above */
#define TAIL_START 26.0 /* erfc(x) is a normal float below */
#define TAIL_TERMS 8
#define TINY 2.2250738585072014e-308
#else
typedef float REAL;
#define ERFC erfcf
#define EXP expf
#define LOG logf
#define SUFFIX(name) name##_f32
#define SATURATED -9.25
#define TAIL_START 9.0
#define TAIL_TERMS 5
#define TINY 1.17549435e-38f
#endif

/* glibc declares its vector variants only under -ffast-math, which we do not use (it would
   assume no inf/nan and, linked into a shared library, set flush-to-zero for the whole process). */
#pragma omp declare simd notinbranch
extern float erfcf(float);
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern float logf(float);
#pragma omp declare simd notinbranch
extern double erfc(double);
#pragma omp declare simd notinbranch
extern double exp(double);
#pragma omp declare simd notinbranch
extern double log(double);

/* Every vectorised loop runs over a multiple of this many entries (padding with a sentinel far
   below the saturation point, which adds nothing), so no scalar remainder calls the scalar math. */
#define WIDTH 8
#define PAD(n) (((n) + WIDTH - 1) / WIDTH * WIDTH)
#define SENTINEL ((REAL)-1e30)
#define MAX_NODES 256
/* Below this many rivals the node terms are vectorised over the nodes (see node_terms). */
#ifndef BY_NODE_BELOW
#define BY_NODE_BELOW 32
#endif

#define SQRT2 1.41421356237309504880
#define INV_SQRT2 0.70710678118654752440
#define LOG_INV_SQRT_2PI -0.91893853320467274178
#define LOG_2_SQRT_PI 1.26551212348464539649
#define SECANT 4.5
/* log F is the log of the product of Phi where that product (in double) stays above this. */
#define PRODUCT_FLOOR 1e-290
#define NEWTON_TOL 1.0
#define NEWTON_MAX_ITER 50

/* Coefficients of log(sqrt(pi) x erfcx(x)) ~ sum_n c_n x^(-2n) (A&S 7.1.23, see the Python module). */
static const double TAIL_COEFFS[8] = {
    -0.5, 0.625, -1.6666666666666667, 6.5625, -33.3, 211.04166666666666, -1580.7857142857142,
    13613.1328125,
};

/* lam and log Phi at x > TAIL_START, where erfc(x) is no longer a normal float. */
static void tail_terms(double x, REAL *lam, REAL *log_phi) {
  double y = 1.0 / (x * x), series = 0.0;
  for (int i = TAIL_TERMS - 1; i >= 0; --i) series = (series + TAIL_COEFFS[i]) * y;
  *lam = (REAL)(SQRT2 * x * exp(-series));
  if (log_phi) *log_phi = (REAL)(series - log(x) - x * x - LOG_2_SQRT_PI);
}

enum { LAM_ONLY, WITH_LOG, WITH_VALUE };

/* lam(u) at x_i = center_i - shift, i < n (a multiple of WIDTH), and per mode nothing else,
   log Phi(u) or Phi(u) itself in phi.  Returns whether phi holds logs: with WITH_VALUE, logs
   where some x is past the switch point (Phi no longer a normal float).  x is clamped up to the
   saturation point (log Phi = 0 exactly, lam ~ 1e-37 in float), so that nothing leaves the
   normal floats, and written to x.  Loops without branches: vectorised. */
static int phi_terms(const REAL *center, REAL shift, int n, REAL *x, REAL *lam, REAL *phi, int mode) {
  REAL high = (REAL)SATURATED;
#pragma omp simd reduction(max : high)
  for (int i = 0; i < n; ++i) {
    REAL xi = center[i] - shift;
    xi = xi < (REAL)SATURATED ? (REAL)SATURATED : xi;
    high = xi > high ? xi : high;
    x[i] = xi;
  }
  if (mode == LAM_ONLY) {
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      REAL body = x[i] < (REAL)TAIL_START ? x[i] : (REAL)TAIL_START;
      lam[i] = EXP((REAL)LOG_INV_SQRT_2PI - body * body) / ((REAL)0.5 * ERFC(body));
    }
  } else {
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      REAL body = x[i] < (REAL)TAIL_START ? x[i] : (REAL)TAIL_START;
      REAL value = (REAL)0.5 * ERFC(body);
      lam[i] = EXP((REAL)LOG_INV_SQRT_2PI - body * body) / value;
      phi[i] = value;
    }
  }
  const int tail = high > (REAL)TAIL_START; /* rows far in the tail: a small sigma and a wrong prediction */
  const int logs = mode == WITH_LOG || (mode == WITH_VALUE && tail);
  if (logs) {
#pragma omp simd
    for (int i = 0; i < n; ++i) phi[i] = LOG(phi[i]);
  }
  if (tail)
    for (int i = 0; i < n; ++i)
      if (x[i] > (REAL)TAIL_START) tail_terms(x[i], &lam[i], logs ? &phi[i] : NULL);
  return logs;
}

/* lam and log Phi of the true class's factor Phi(-t): x = t / sqrt2, in double. */
static void true_terms(double t, double *lam, double *log_phi) {
  double x = t * INV_SQRT2;
  if (x < SATURATED) x = SATURATED;
  if (x > TAIL_START) {
    REAL l, lp;
    tail_terms(x, &l, &lp);
    *lam = l, *log_phi = lp;
    return;
  }
  double phi = 0.5 * erfc(x);
  *lam = exp(LOG_INV_SQRT_2PI - x * x) / phi;
  *log_phi = log(phi);
}

/* Inverse normal CDF for p in [1/2, 1) (Acklam's rational approximation, relative error 1e-9):
   only Newton's start uses it. */
static double ndtri_upper(double p) {
  static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                              1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                              6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                              -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                              3.754408661907416e+00};
  if (p <= 0.97575) {
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  double q = sqrt(-2.0 * log(1.0 - p));
  return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
         ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
}

/* erfcx(z) = exp(z^2) erfc(z), in double, for any z (inf far left: its reciprocal is then 0). */
static double erfcx_any(double z) {
  if (z < 25.0) return exp(z * z) * erfc(z);
  double y = 1.0 / (2.0 * z * z);
  return (1.0 - y * (1.0 - 3.0 * y)) / (z * 1.7724538509055160273);
}

/* Newton's start: the two approximations of _start in _exact_quadrature.py (in t units).
   xr: the rivals' x at t = 0, i.e. -m_j / sqrt2, padded with the sentinel to rp entries. */
static double newton_start(const REAL *xr, int rp) {
  REAL top = xr[0];
#pragma omp simd reduction(max : top)
  for (int j = 0; j < rp; ++j) top = xr[j] > top ? xr[j] : top;
  REAL count = 0;
#pragma omp simd reduction(+ : count)
  for (int j = 0; j < rp; ++j) count += ERFC(top - xr[j]);
  if (count < 2) count = 2;
  double c = ndtri_upper(1.0 - 1.0 / count);
  double beta2 = 1.0 / (1.0 + c * c);
  double bump = c + SQRT2 * top; /* -m */
  double lam = 0.79788456080286535588 / erfcx_any(bump * INV_SQRT2);
  double p = lam * (lam - bump);
  p = p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
  double start = bump - beta2 * lam / (1.0 + beta2 * p);
  if (top <= 0) return start;
  double t = top * INV_SQRT2; /* -m_1 / 2: the root for one rival */
  REAL excess = 0, active = 0;
  const REAL shift = (REAL)(t * INV_SQRT2);
#pragma omp simd reduction(+ : excess, active)
  for (int j = 0; j < rp; ++j) {
    REAL e = xr[j] - shift;
    excess += e > 0 ? e : 0;
    active += e > 0 ? 1 : 0;
  }
  t = (excess * SQRT2 + active * t) / (active + 1.0);
  return t > start ? t : start;
}

/* log h at t = mu + offset from the rivals' x at mu (xm, rp entries); buffers of rp entries. */
static double log_h_at(const REAL *xm, int rp, double mu, double offset, REAL *x, REAL *lam, REAL *log_phi) {
  phi_terms(xm, (REAL)(offset * INV_SQRT2), rp, x, lam, log_phi, WITH_LOG);
  double s = 0.0, log_f = 0.0;
#pragma omp simd reduction(+ : s, log_f)
  for (int j = 0; j < rp; ++j) s += lam[j], log_f += log_phi[j];
  double lam0, log_phi0;
  true_terms(mu + offset, &lam0, &log_phi0);
  return log_f + log_phi0 + log(s > 1e-300 ? s : 1e-300);
}

/* The node terms x_jk = xm_j - offset_k / sqrt2 for kept rivals j and nodes k: lam_jk, u_jk + lam_jk
   (kept to integrate the gradient) and the sums over the rivals S_k and log F_k.  Two layouts:
   vectorised over the rivals (node by node: long loops, for many rivals) or over the nodes
   (rival by rival: no padding of a few rivals up to WIDTH, for few). */
typedef struct {
  REAL *lam, *v; /* by rival: [k][j] with stride kept_p; by node: [j][k] with stride kp */
  REAL s[MAX_NODES], log_f[MAX_NODES];
  int by_node, kept, kept_p, k_nodes, kp;
} Nodes;

static void node_terms(Nodes *nd, REAL *xm, const REAL *offsets, REAL *log_phi) {
  if (!nd->by_node) {
    for (int j = nd->kept; j < nd->kept_p; ++j) xm[j] = SENTINEL;
    for (int k = 0; k < nd->k_nodes; ++k) {
      REAL *lk = nd->lam + (size_t)k * nd->kept_p, *vk = nd->v + (size_t)k * nd->kept_p;
      /* log F as the log of the product of Phi (one log per node, not per term) unless that
         product leaves the normal doubles; vk: the clamped x, then u + lam */
      REAL *phi = log_phi;
      const int logs = phi_terms(xm, (REAL)(offsets[k] * INV_SQRT2), nd->kept_p, vk, lk, phi, WITH_VALUE);
      double s = 0.0, product = 1.0;
#pragma omp simd reduction(+ : s) reduction(* : product)
      for (int j = 0; j < nd->kept_p; ++j) {
        s += lk[j], product *= logs ? 1.0 : (double)phi[j];
        vk[j] = lk[j] - (REAL)SQRT2 * vk[j];
      }
      double log_f = 0.0;
      if (!logs && product >= PRODUCT_FLOOR) {
        log_f = log(product);
      } else { /* every partial product is at least the whole: none lost precision above the floor */
#pragma omp simd reduction(+ : log_f)
        for (int j = 0; j < nd->kept_p; ++j) log_f += logs ? phi[j] : LOG(phi[j]);
      }
      nd->s[k] = (REAL)s, nd->log_f[k] = (REAL)log_f;
    }
    return;
  }
  REAL neg_shift[MAX_NODES];
  for (int k = 0; k < nd->kp; ++k) {
    neg_shift[k] = k < nd->k_nodes ? (REAL)(-offsets[k] * INV_SQRT2) : 0;
    nd->s[k] = 0, nd->log_f[k] = 0;
  }
  for (int j = 0; j < nd->kept; ++j) {
    REAL *lj = nd->lam + (size_t)j * nd->kp, *vj = nd->v + (size_t)j * nd->kp, *s = nd->s, *log_f = nd->log_f;
    phi_terms(neg_shift, -xm[j], nd->kp, vj, lj, log_phi, WITH_LOG); /* vj: the clamped x */
#pragma omp simd
    for (int k = 0; k < nd->kp; ++k) {
      s[k] += lj[k], log_f[k] += log_phi[k];
      vj[k] = lj[k] - (REAL)SQRT2 * vj[k];
    }
  }
}

/* d log P / d m_j = sum_k omega_k lam_jk (1 - (u_jk + lam_jk) / S_k), with the weights omega_k and
   omega_k / S_k (zero past the nodes); acc: kept_p entries. */
static void node_gradient(const Nodes *nd, const REAL *omega, const REAL *omega_per_s, REAL *acc) {
  if (!nd->by_node) {
    for (int j = 0; j < nd->kept_p; ++j) acc[j] = 0;
    for (int k = 0; k < nd->k_nodes; ++k) {
      const REAL *lk = nd->lam + (size_t)k * nd->kept_p, *vk = nd->v + (size_t)k * nd->kept_p;
      const REAL w = omega[k], w_per_s = omega_per_s[k];
#pragma omp simd
      for (int j = 0; j < nd->kept_p; ++j) acc[j] += lk[j] * (w - vk[j] * w_per_s);
    }
    return;
  }
  for (int j = 0; j < nd->kept; ++j) {
    const REAL *lj = nd->lam + (size_t)j * nd->kp, *vj = nd->v + (size_t)j * nd->kp;
    REAL sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int k = 0; k < nd->kp; ++k) sum += lj[k] * (omega[k] - vj[k] * omega_per_s[k]);
    acc[j] = sum;
  }
}

/* One row: log P, d log P / d m (grad, C entries, 0 in the true column and for rivals saturated
   at every node) and the rule (mu, offsets and log weights, 2 n each).  xr: the rivals' x at
   t = 0 padded with the sentinel to rp = PAD(r) entries, with their columns idx (r); work:
   4 max(rp, PAD(K)) + 2 max(K rp, PAD(K) r) REALs; kept_idx: r columns. */
static REAL one_row(const REAL *xr, const int64_t *idx, int r, int n, const double *hermite_x,
                    const double *hermite_log_w, REAL *grad, REAL *mu_out, REAL *offsets_out,
                    REAL *log_w_out, REAL *work, int64_t *kept_idx) {
  const int rp = PAD(r), k_nodes = 2 * n, kp = PAD(k_nodes), wide = rp > kp ? rp : kp;
  REAL *x = work, *lam = work + wide, *log_phi = work + 2 * wide, *xm = work + 3 * wide;
  REAL *node_lam = work + 4 * wide;
  /* Newton's method on log h; the curvature is floored at 1/2 (see _mode). */
  double t = newton_start(xr, rp), curvature = 1.0;
  for (int it = 0; it < NEWTON_MAX_ITER; ++it) {
    phi_terms(xr, (REAL)(t * INV_SQRT2), rp, x, lam, NULL, LAM_ONLY);
    double s = 0.0, big_p = 0.0, big_neg_q = 0.0;
#pragma omp simd reduction(+ : s, big_p, big_neg_q)
    for (int j = 0; j < rp; ++j) {
      REAL l = lam[j], w = l - (REAL)SQRT2 * x[j]; /* u + lam */
      REAL p = l * w;
      s += l, big_p += p, big_neg_q += l - p * (w + l);
    }
    double lam0, log_phi0;
    true_terms(t, &lam0, &log_phi0);
    double p0 = lam0 * (lam0 - t); /* u = -t for the true factor */
    if (s < 1e-300) s = 1e-300;
    double ratio = big_p / s;
    double d1 = s - lam0 - ratio;
    curvature = big_neg_q / s + big_p + p0 + ratio * ratio;
    if (curvature < 0.5) curvature = 0.5;
    double step = d1 / curvature;
    t += step;
    if (step * d1 <= NEWTON_TOL * NEWTON_TOL) break;
  }
  const double mu = t, tau = 1.0 / sqrt(curvature);
  /* The rivals' x at the mode; the small offsets are subtracted last (see _log_h). */
  const REAL shift = (REAL)(mu * INV_SQRT2);
#pragma omp simd
  for (int j = 0; j < rp; ++j) xm[j] = xr[j] - shift;
  /* One scale per side from the drop of log h at mu -+ SECANT tau. */
  double h0 = log_h_at(xm, rp, mu, 0.0, x, lam, log_phi), scale[2];
  for (int side = 0; side < 2; ++side) {
    double drop = h0 - log_h_at(xm, rp, mu, (side ? SECANT : -SECANT) * tau, x, lam, log_phi);
    if (!(drop >= SECANT * SECANT / 2.0 / 64.0)) drop = SECANT * SECANT / 2.0 / 64.0;
    scale[side] = tau * SECANT / sqrt(drop);
  }
  const double log_scale[2] = {log(scale[0]), log(scale[1])};
  /* The nodes; the true class's factor Phi(-t) at each, x = t / sqrt2. */
  REAL true_x[MAX_NODES], true_lam[MAX_NODES], true_log_phi[MAX_NODES], true_center[MAX_NODES];
  double low_offset = 0.0; /* the leftmost node */
  for (int k = 0; k < kp; ++k) {
    if (k >= k_nodes) {
      true_center[k] = SENTINEL;
      continue;
    }
    int side = k >= n, i = side ? k - n : k;
    double offset = scale[side] * (side ? hermite_x[i] : -hermite_x[i]);
    offsets_out[k] = (REAL)offset;
    log_w_out[k] = (REAL)(hermite_log_w[i] + log_scale[side]);
    true_center[k] = (REAL)((mu + offset) * INV_SQRT2);
    if (offset < low_offset) low_offset = offset;
  }
  phi_terms(true_center, 0, kp, true_x, true_lam, true_log_phi, WITH_LOG);
  *mu_out = (REAL)mu;
  /* Rivals saturated at every node (x below the saturation point at the leftmost node, where x
     is largest) add log Phi = 0 and lam < 1e-37: left out, with a zero gradient. */
  int kept = 0;
  const REAL low_shift = (REAL)(low_offset * INV_SQRT2);
  for (int j = 0; j < r; ++j)
    if (xm[j] - low_shift > (REAL)SATURATED) xm[kept] = xm[j], kept_idx[kept] = idx[j], ++kept;
  Nodes nd = {.lam = node_lam, .by_node = r < BY_NODE_BELOW, .kept = kept, .kept_p = PAD(kept),
              .k_nodes = k_nodes, .kp = kp};
  nd.v = node_lam + (size_t)(nd.by_node ? kept * kp : k_nodes * nd.kept_p);
  node_terms(&nd, xm, offsets_out, log_phi);
  for (int k = 0; k < kp; ++k) /* a node where every rival's lam underflows gets weight 0, not nan */
    nd.s[k] = k >= k_nodes ? 1 : (nd.s[k] >= TINY ? nd.s[k] : TINY);
  REAL terms[MAX_NODES];
#pragma omp simd
  for (int k = 0; k < kp; ++k) /* the padding nodes: far below the others, weight exp(-1e30) = 0 */
    terms[k] = k < k_nodes ? nd.log_f[k] + true_log_phi[k] + log_w_out[k] + LOG(nd.s[k]) : (REAL)-1e30;
  /* log P by log-sum-exp; the node weights omega_k = exp(terms_k - log P) relative to the largest
     term, so that a log P of -1e4 (the far tail) does not round them all alike */
  REAL best = terms[0], total = 0, omega[MAX_NODES], omega_per_s[MAX_NODES];
  for (int k = 1; k < k_nodes; ++k) best = terms[k] > best ? terms[k] : best;
#pragma omp simd reduction(+ : total)
  for (int k = 0; k < kp; ++k) {
    omega[k] = EXP(terms[k] - best);
    total += omega[k];
  }
  const double log_p = best + log(total);
  if (grad) {
    const REAL inv_total = 1 / total;
#pragma omp simd
    for (int k = 0; k < kp; ++k) {
      omega[k] *= inv_total;
      omega_per_s[k] = omega[k] / nd.s[k];
    }
    node_gradient(&nd, omega, omega_per_s, lam);
    for (int j = 0; j < kept; ++j) grad[kept_idx[j]] = lam[j];
  }
  return (REAL)log_p;
}

/* Rows [0, b) of scores (B, C) with true classes target (B,): log_p (B,), grad (B, C) or NULL,
   mu (B,), offsets and log_weights (B, 2 n).  With scale = 0 the scores are the margins m (zero in
   the true column) and grad is d log P / d m; with scale > 0 they are logits s, the margins are
   m_j = (s_y - s_j) scale and grad is d log P / d s.  2 n <= MAX_NODES.  Returns 0, or -1 if out
   of memory. */
int SUFFIX(lossbench_exact_rows)(const REAL *scores, const int64_t *target, int64_t b, int64_t c, double scale,
                                 int n, const double *hermite_x, const double *hermite_log_w, REAL *log_p,
                                 REAL *grad, REAL *mu, REAL *offsets, REAL *log_weights, int threads) {
  int failed = 0;
  const int r = (int)c - 1, rp = PAD(r), k_nodes = 2 * n;
  if (k_nodes > MAX_NODES) return -2;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    /* the rivals' x, the row's work space (see one_row), the columns */
    size_t node_terms = (size_t)k_nodes * rp > (size_t)PAD(k_nodes) * r ? (size_t)k_nodes * rp : (size_t)PAD(k_nodes) * r;
    size_t work_size = 4 * (size_t)(rp > PAD(k_nodes) ? rp : PAD(k_nodes)) + 2 * node_terms;
    size_t size = (rp + work_size) * sizeof(REAL) + 2 * (size_t)r * sizeof(int64_t);
    REAL *xr = (REAL *)malloc(size);
    if (!xr) {
      failed = 1;
    } else {
      REAL *work = xr + rp;
      int64_t *idx = (int64_t *)(work + work_size), *kept_idx = idx + r;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < b; ++i) {
        const REAL *row = scores + i * c;
        const int64_t y = target[i];
        const int logits = scale > 0;
        /* x = -m_j / sqrt2 = (s_j - s_y) scale / sqrt2 from logits, else -m_j / sqrt2 */
        const REAL top = logits && y >= 0 && y < c ? row[y] : 0;
        const REAL factor = (REAL)(logits ? scale * INV_SQRT2 : -INV_SQRT2);
        REAL *g = grad ? grad + i * c : NULL;
        int j = 0;
        for (int64_t col = 0; col < c; ++col) {
          if (g) g[col] = 0;
          if (col == y || j == r) continue; /* j == r: the target is out of range */
          xr[j] = (row[col] - top) * factor, idx[j] = col, ++j;
        }
        for (int pad = j; pad < rp; ++pad) xr[pad] = SENTINEL;
        log_p[i] = one_row(xr, idx, j, n, hermite_x, hermite_log_w, g, mu + i, offsets + i * k_nodes,
                           log_weights + i * k_nodes, work, kept_idx);
        if (g && logits && y >= 0 && y < c) { /* d/ds_j = -scale d/dm_j for the rivals, d/ds_y = scale sum_j d/dm_j */
          REAL total = 0;
          for (int64_t col = 0; col < c; ++col) total += g[col], g[col] *= (REAL)-scale;
          g[y] = total * (REAL)scale;
        }
      }
      free(xr);
    }
  }
  return failed ? -1 : 0;
}
