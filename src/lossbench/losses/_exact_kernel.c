/* The EXACT quadrature of _exact_integral.py fused into one pass per row (CPU).

   Same integral, same rule: log P = log int h(t) dt with h(t) = Phi(-t) F(t) S(t) (the density of
   the rivals' maximum times the true class's factor), Newton's method for the mode of log h,
   secant probes at mu -+ delta tau for one scale per side, a half-range Gauss-Hermite rule on each
   side, and d log P / d m_j integrated at the same nodes.  A row may instead ask for the
   complement Q = 1 - P (the true class's factor mirrored to Phi(t): see "the complement" in
   _exact_quadrature.py) or for the union bound of Q in closed form (far in the tail); the call
   chooses each row's way itself, and gives a per-sample loss (1 - P or -log P), its mean or sum and
   their gradient with respect to the logits where the caller asks (one call per training step:
   see lossbench_exact_rows).  Per row everything stays in cache (the node terms are K x R values),
   so the cost is the erfc and the exp of each (node, rival) term, in float inlined without calls
   (see phi_and_lam), in double by glibc's libmvec (log F is the log of the product of Phi, once per
   node, where that product stays a normal double), and no per-op overhead.  With few rivals, rows go
   through the rule side by side, one per vector lane (lane_rows), each with its own arithmetic.  Rows
   are independent: split between OpenMP threads, with the same bits whatever the split.

   Compiled twice from this file, with REAL = float and REAL = double (see _exact_native.py);
   the Python side computes the rule's tables and every numerical constant (the enum below: one
   source, shared with the PyTorch path) and checks the arguments.  Notation as there:
   x = -u / sqrt2 with u = t + m_j, Phi(u) = erfc(x) / 2, lam(u) = phi(u) / Phi(u).
*/
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef REAL_DOUBLE
typedef double REAL;
#define ERFC erfc
#define EXP exp
#define LOG log
#define SUFFIX(name) name##_f64
#define TINY DBL_MIN
#else
typedef float REAL;
#define ERFC erfcf
#define EXP expf
#define LOG logf
#define SUFFIX(name) name##_f32
#define TINY FLT_MIN
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

/* Phi(u) = erfc(x) / 2 and lam(u) = phi(u) / Phi(u) at one x (u = -sqrt2 x), for x between the
   saturation point and the switch point; inlined in the vectorised loops.  In double by glibc's
   erfc and exp.  In float without calls (libmvec's erfcf was half of the time: it reads tables,
   and every call spills the vector registers): with E = exp(-x^2) (x^2 split in two floats, so E
   keeps its relative precision up to x = 9) and erfcx(|x|) = exp(x^2) erfc(|x|) = P(|x|) / Q(|x|),
   erfc(x) = E P / Q for x >= 0 and 2 - E P / Q below, and lam = E / (sqrt(2 pi) Phi): with
   N = E P / 2 (x >= 0) or Q - E P / 2 (P / 2's coefficients stored), Phi = N / Q and lam = E Q / (sqrt(2 pi) N), from the one
   division 1 / (N Q).  P and Q (degrees 4 and 5, positive coefficients: no cancellation) were
   fitted to SciPy's erfcx on [0, 9.25] (linearised least squares in relative error, reweighted):
   relative error 2e-8 in exact arithmetic, 4e-7 in float (glibc's erfcf: 1 ulp, 6e-8), and
   P / Q -> p_4 / (q_5 x) = 1 / (sqrt(pi) x) to 1e-5 far right, erfcx's own asymptote.  */
#ifdef REAL_DOUBLE
static inline void phi_and_lam(REAL x, REAL *phi, REAL *lam, const REAL log_scale) {
  const REAL value = (REAL)0.5 * ERFC(x);
  *lam = EXP(log_scale - x * x) / value;
  *phi = value;
}
#else
/* exp(-(hi + lo)) for hi + lo in [0, 88], lo a small correction of hi (Cephes' expf: 2^n exp(r),
   |r| <= ln2 / 2, a degree-6 polynomial; lo enters r exactly where it matters) */
static inline float exp_of_minus(float hi, float lo) {
  float n = hi * -1.44269504088896341f + 12582912.0f; /* round to the nearest integer */
  n -= 12582912.0f;
  float r = fmaf(n, -0.693145751953125f, -hi);
  r = fmaf(n, -1.428606765330187e-06f, r) - lo;
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p * r, r, r) + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n >= -127 */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline void phi_and_lam(float x, float *phi, float *lam, const float log_scale) {
  (void)log_scale;
  const float ax = x < 0 ? -x : x, hi = x * x;
  const float e = exp_of_minus(hi, fmaf(x, x, -hi));
  float p = 0.01667587476793251f; /* P / 2 */
  p = fmaf(p, ax, 0.11573081376253224f);
  p = fmaf(p, ax, 0.36793615834410635f);
  p = fmaf(p, ax, 0.6209965092457591f);
  p = fmaf(p, ax, 0.5000000117373279f);
  float q = 0.05911369803004765f;
  q = fmaf(q, ax, 0.4102820869760116f);
  q = fmaf(q, ax, 1.3334245432859564f);
  q = fmaf(q, ax, 2.4105370320790525f);
  q = fmaf(q, ax, 2.370373402803883f);
  q = fmaf(q, ax, 1.0f);
  const float half = e * p, n = x >= 0 ? half : q - half;
  const float inv = 1.0f / (n * q); /* n q >= 1e-36 for x <= 9 */
  *phi = n * (n * inv);
  *lam = (0.3989422804014327f * e * q) * (q * inv);
}
#endif

/* Every vectorised loop runs over a multiple of this many entries (padding with a sentinel far
   below the saturation point, which adds nothing), so no scalar remainder calls the scalar math. */
#define WIDTH 8
#define PAD(n) (((n) + WIDTH - 1) / WIDTH * WIDTH)
#define SENTINEL ((REAL)-1e30)
#define MAX_NODES 256
#define MAX_TAIL_TERMS 8 /* (the vectorised series runs over this many, the first ones zero) */
/* Below this many rivals the node terms are vectorised over the nodes (see node_terms), and rows of
   the rule run side by side in vector lanes (see lane_rows; a test builds the kernel without them). */
#ifndef BY_NODE_BELOW
#define BY_NODE_BELOW 32
#endif
#ifndef LANES_BELOW
#define LANES_BELOW BY_NODE_BELOW
#endif

/* The numerical constants as Python passes them (_exact_native.CONSTANT_NAMES: the same names in
   the same order, checked by a test), for this call's dtype: a flat array of doubles. */
enum {
  K_SATURATED,         /* x is clamped up to this: erfc(x) = 2, exp(-x^2) a normal REAL */
  K_TAIL_START,        /* past this x, erfc(x) is no longer a normal REAL: the series below */
  K_SECANT,            /* the probes' half-width in Laplace scales, for P */
  K_SECANT_COMPLEMENT, /* and for Q */
  K_NEWTON_TOL,
  K_NEWTON_MAX_ITER,
  K_WATER_STEPS, /* Newton steps on the water level of Newton's start (for P) */
  K_PRODUCT_FLOOR, /* log F is the log of the product of Phi (in double) while it stays above */
  K_SQRT2,
  K_INV_SQRT2,
  K_LOG_INV_SQRT_2PI,
  K_LOG_2_SQRT_PI,
  K_UNION_BOUND, /* a row's way: the complement's rule below this union bound of Q (see choose_way) */
  K_FAR_MARGIN,  /* and none past this margin of a rival ahead (the caller's closed form) */
  K_NDTRI_SPLIT, /* Acklam's inverse normal CDF: central region up to this p, its coefficients */
  K_NDTRI_A,
  K_NDTRI_B = K_NDTRI_A + 6,
  K_NDTRI_C = K_NDTRI_B + 5,
  K_NDTRI_D = K_NDTRI_C + 6,
  K_TAIL_TERMS = K_NDTRI_D + 4, /* terms of the series of log(sqrt(pi) x erfcx(x)) used for this dtype */
  K_TAIL_COEFFS,                /* its coefficients c_1, c_2, ... (as many as K_TAIL_TERMS at least) */
};

typedef struct {
  REAL saturated, tail_start;
  int tail_terms, newton_max_iter, water_steps;
  double secant[2], newton_tol, product_floor, sqrt2, inv_sqrt2, log_inv_sqrt_2pi, log_2_sqrt_pi;
  double union_bound, far_margin;
  double ndtri_split, ndtri_a[6], ndtri_b[5], ndtri_c[6], ndtri_d[4], tail_coeffs[MAX_TAIL_TERMS];
  REAL tail_padded[MAX_TAIL_TERMS]; /* c_1 .. c_terms, then zeros (Horner from the last: exact zeros) */
} Constants;

/* 0, or -3 when the series has more terms than this build holds. */
static int read_constants(const double *v, Constants *k) {
  k->saturated = (REAL)v[K_SATURATED], k->tail_start = (REAL)v[K_TAIL_START];
  k->tail_terms = (int)v[K_TAIL_TERMS], k->newton_max_iter = (int)v[K_NEWTON_MAX_ITER];
  k->water_steps = (int)v[K_WATER_STEPS];
  k->secant[0] = v[K_SECANT], k->secant[1] = v[K_SECANT_COMPLEMENT];
  k->newton_tol = v[K_NEWTON_TOL], k->product_floor = v[K_PRODUCT_FLOOR];
  k->sqrt2 = v[K_SQRT2], k->inv_sqrt2 = v[K_INV_SQRT2];
  k->log_inv_sqrt_2pi = v[K_LOG_INV_SQRT_2PI], k->log_2_sqrt_pi = v[K_LOG_2_SQRT_PI];
  k->union_bound = v[K_UNION_BOUND], k->far_margin = v[K_FAR_MARGIN];
  k->ndtri_split = v[K_NDTRI_SPLIT];
  for (int i = 0; i < 6; ++i) k->ndtri_a[i] = v[K_NDTRI_A + i], k->ndtri_c[i] = v[K_NDTRI_C + i];
  for (int i = 0; i < 5; ++i) k->ndtri_b[i] = v[K_NDTRI_B + i];
  for (int i = 0; i < 4; ++i) k->ndtri_d[i] = v[K_NDTRI_D + i];
  if (k->tail_terms < 1 || k->tail_terms > MAX_TAIL_TERMS) return -3;
  for (int i = 0; i < k->tail_terms; ++i) k->tail_coeffs[i] = v[K_TAIL_COEFFS + i];
  for (int i = 0; i < MAX_TAIL_TERMS; ++i) k->tail_padded[i] = i < k->tail_terms ? (REAL)k->tail_coeffs[i] : 0;
  return 0;
}

/* erfc(x) / 2 for any x: erfc clamped at the saturation and switch points (2 and a normal REAL
   below 1e-36, where only a sum of such terms needs it) */
static inline REAL half_erfc(REAL x, const Constants *k) {
  REAL value, lam;
  x = x < k->saturated ? k->saturated : (x > k->tail_start ? k->tail_start : x);
  phi_and_lam(x, &value, &lam, 0);
  return value;
}

/* lam and log Phi at x > tail_start, where erfc(x) is no longer a normal REAL: with the series
   log(sqrt(pi) x erfcx(x)) ~ sum_n c_n x^(-2n), lam = sqrt2 x exp(-series) and
   log Phi = series - log x - x^2 - log(2 sqrt(pi)). */
static void tail_terms(double x, REAL *lam, REAL *log_phi, const Constants *k) {
  double y = 1.0 / (x * x), series = 0.0;
  for (int i = k->tail_terms - 1; i >= 0; --i) series = (series + k->tail_coeffs[i]) * y;
  *lam = (REAL)(k->sqrt2 * x * exp(-series));
  if (log_phi) *log_phi = (REAL)(series - log(x) - x * x - k->log_2_sqrt_pi);
}

enum { LAM_ONLY, WITH_LOG, WITH_VALUE };

/* lam(u) at x_i = center_i - shift, i < n (a multiple of WIDTH), and per mode nothing else,
   log Phi(u) or Phi(u) itself in phi.  Returns whether phi holds logs: with WITH_VALUE, logs
   where some x is past the switch point (Phi no longer a normal float).  x is clamped up to the
   saturation point (log Phi = 0 exactly, lam ~ 1e-37 in float), so that nothing leaves the
   normal floats, and written to x.  Loops without branches: vectorised. */
static int phi_terms(const REAL *center, REAL shift, int n, REAL *x, REAL *lam, REAL *phi, int mode,
                     const Constants *k) {
  const REAL saturated = k->saturated, tail_start = k->tail_start, log_scale = (REAL)k->log_inv_sqrt_2pi;
  REAL high = saturated;
#pragma omp simd reduction(max : high)
  for (int i = 0; i < n; ++i) {
    REAL xi = center[i] - shift;
    xi = xi < saturated ? saturated : xi;
    high = xi > high ? xi : high;
    x[i] = xi;
  }
  if (mode == LAM_ONLY) {
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      REAL value;
      phi_and_lam(x[i] < tail_start ? x[i] : tail_start, &value, &lam[i], log_scale);
    }
  } else {
#pragma omp simd
    for (int i = 0; i < n; ++i) phi_and_lam(x[i] < tail_start ? x[i] : tail_start, &phi[i], &lam[i], log_scale);
  }
  const int tail = high > tail_start; /* rows far in the tail: a small sigma and a wrong prediction */
  const int logs = mode == WITH_LOG || (mode == WITH_VALUE && tail);
  if (logs) {
#pragma omp simd
    for (int i = 0; i < n; ++i) phi[i] = LOG(phi[i]);
  }
  if (tail) { /* the series (see tail_terms) in every lane, kept in the tail's: vectorised */
    const REAL sqrt2 = (REAL)k->sqrt2, log_2_sqrt_pi = (REAL)k->log_2_sqrt_pi;
    const REAL *c = k->tail_padded;
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      const int far = x[i] > tail_start;
      const REAL xi = far ? x[i] : tail_start, y = 1 / (xi * xi);
      REAL series = 0;
      for (int t = MAX_TAIL_TERMS - 1; t >= 0; --t) series = (series + c[t]) * y;
      lam[i] = far ? sqrt2 * xi * EXP(-series) : lam[i];
      if (logs) phi[i] = far ? series - LOG(xi) - xi * xi - log_2_sqrt_pi : phi[i];
    }
  }
  return logs;
}

/* lam and log Phi at one x, as phi_terms evaluates them (clamped; log_phi may be NULL): for the true
   class's factor where Newton's method and the probes place the rule. */
static double mills_at(double x, double *log_phi, const Constants *k) {
  if (x < k->saturated) x = k->saturated;
  REAL lam, value;
  if (x > k->tail_start) {
    tail_terms(x, &lam, &value, k);
    if (log_phi) *log_phi = value;
    return lam;
  }
  phi_and_lam((REAL)x, &value, &lam, (REAL)k->log_inv_sqrt_2pi);
  if (log_phi) *log_phi = log(value);
  return lam;
}

/* Inverse normal CDF for p in [1/2, 1) (Acklam's rational approximation, relative error 1e-9):
   only Newton's start uses it. */
static double ndtri_upper(double p, const Constants *k) {
  const double *a = k->ndtri_a, *b = k->ndtri_b, *c = k->ndtri_c, *d = k->ndtri_d;
  if (p <= k->ndtri_split) {
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  double q = sqrt(-2.0 * log(1.0 - p));
  return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
         ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
}

/* Newton's start: the approximations of _start in _exact_integral.py (in t units).
   xr: the rivals' x at t = 0, i.e. -m_j / sqrt2, padded with the sentinel to rp entries.
   sign = 1 for P (the true class's factor Phi(-t)), -1 for Q (Phi(t)). */
static double newton_start(const REAL *xr, int rp, double sign, const Constants *k) {
  REAL top = xr[0];
#pragma omp simd reduction(max : top)
  for (int j = 0; j < rp; ++j) top = xr[j] > top ? xr[j] : top;
  REAL count = 0;
#pragma omp simd reduction(+ : count)
  for (int j = 0; j < rp; ++j) count += 2 * half_erfc(top - xr[j], k);
  if (count < 2) count = 2;
  double c = ndtri_upper(1.0 - 1.0 / count, k);
  double beta2 = 1.0 / (1.0 + c * c);
  double bump = c + k->sqrt2 * top; /* -m */
  /* the mode of Phi(-sign t) exp(-(t + m)^2 / (2 beta^2)): one Newton step from the bump, with
     u = -sign t the true factor's argument, lam(u) and p(u) = lam (u + lam) */
  double lam = mills_at(sign * bump * k->inv_sqrt2, NULL, k);
  double p = lam * (lam - sign * bump);
  p = p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
  double start = bump - sign * beta2 * lam / (1.0 + beta2 * p);
  if (sign < 0 || top <= 0) return start; /* the water level: for P only (see _start) */
  double t = top * k->inv_sqrt2; /* -m_1 / 2: the root for one rival */
  for (int step = 0; step < k->water_steps; ++step) {
    REAL excess = 0, active = 0;
    const REAL shift = (REAL)(t * k->inv_sqrt2);
#pragma omp simd reduction(+ : excess, active)
    for (int j = 0; j < rp; ++j) {
      REAL e = xr[j] - shift;
      excess += e > 0 ? e : 0;
      active += e > 0 ? 1 : 0;
    }
    t = (excess * k->sqrt2 + active * t) / (active + 1.0);
  }
  return t > start ? t : start;
}

/* log prod_j phi_j over n entries (logs: phi holds the logs, see phi_terms), given their product in
   double: its log (one log instead of n) where it stays above the floor, else the sum of the logs
   (every partial product is at least the whole: above the floor none lost precision). */
static double log_of_product(const REAL *phi, int n, int logs, double product, const Constants *k) {
  if (!logs && product >= k->product_floor) return log(product);
  double log_f = 0.0;
#pragma omp simd reduction(+ : log_f)
  for (int j = 0; j < n; ++j) log_f += logs ? phi[j] : LOG(phi[j]);
  return log_f;
}

/* log h at t = mu + offset from the rivals' x at mu (xm, rp entries); buffers of rp entries. */
static double log_h_at(const REAL *xm, int rp, double mu, double offset, double sign, REAL *x, REAL *lam,
                       REAL *phi, const Constants *k) {
  const int logs = phi_terms(xm, (REAL)(offset * k->inv_sqrt2), rp, x, lam, phi, WITH_VALUE, k);
  double s = 0.0, product = 1.0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < rp; ++j) s += lam[j];
  if (!logs) {
#pragma omp simd reduction(* : product)
    for (int j = 0; j < rp; ++j) product *= (double)phi[j];
  }
  double log_phi0;
  mills_at(sign * (mu + offset) * k->inv_sqrt2, &log_phi0, k);
  return log_of_product(phi, rp, logs, product, k) + log_phi0 + log(s > DBL_MIN ? s : DBL_MIN);
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

static void node_terms(Nodes *nd, REAL *xm, const REAL *offsets, REAL *x, REAL *lam, REAL *log_phi,
                       const Constants *k) {
  const REAL sqrt2 = (REAL)k->sqrt2;
  if (!nd->by_node) {
    double products[MAX_NODES];
    char below[MAX_NODES] = {0};
    for (int j = nd->kept; j < nd->kept_p; ++j) xm[j] = SENTINEL;
    for (int i = 0; i < nd->k_nodes; ++i) {
      REAL *lk = nd->lam + (size_t)i * nd->kept_p, *vk = nd->v + (size_t)i * nd->kept_p;
      /* log F as the log of the product of Phi (one log per node, not per term) unless that
         product leaves the normal doubles; vk: the clamped x, then u + lam.  (One pass with the
         double sums inside phi_terms' loop ran at half the vector width: 15% slower.) */
      REAL *phi = log_phi;
      const int logs = phi_terms(xm, (REAL)(offsets[i] * k->inv_sqrt2), nd->kept_p, vk, lk, phi, WITH_VALUE, k);
      double s = 0.0, product = 1.0;
#pragma omp simd reduction(+ : s) reduction(* : product)
      for (int j = 0; j < nd->kept_p; ++j) {
        s += lk[j], product *= logs ? 1.0 : (double)phi[j];
        vk[j] = lk[j] - sqrt2 * vk[j];
      }
      nd->s[i] = (REAL)s;
      if (!logs && product >= k->product_floor)
        products[i] = product; /* its log below, with the other nodes' (vectorised) */
      else
        products[i] = 1.0, nd->log_f[i] = (REAL)log_of_product(phi, nd->kept_p, logs, product, k), below[i] = 1;
    }
    double logs_of[MAX_NODES];
#pragma omp simd
    for (int i = 0; i < nd->k_nodes; ++i) logs_of[i] = log(products[i]);
    for (int i = 0; i < nd->k_nodes; ++i)
      if (!below[i]) nd->log_f[i] = (REAL)logs_of[i];
    return;
  }
  /* log F per node as the log of the product of Phi in double (one log per node), unless a rival is
     past the switch point (phi_terms gives its log) or some node's product leaves the floor: then
     the sum of the logs, the terms evaluated again (a row far in the tail) */
  REAL neg_shift[MAX_NODES];
  double product[MAX_NODES];
  int logs = 0;
  for (int i = 0; i < nd->kp; ++i) {
    neg_shift[i] = i < nd->k_nodes ? (REAL)(-offsets[i] * k->inv_sqrt2) : 0;
    nd->s[i] = 0, product[i] = 1.0;
  }
  for (int j = 0; j < nd->kept; ++j) {
    REAL *lj = nd->lam + (size_t)j * nd->kp, *vj = nd->v + (size_t)j * nd->kp, *s = nd->s;
    logs |= phi_terms(neg_shift, -xm[j], nd->kp, vj, lj, log_phi, WITH_VALUE, k); /* vj: the clamped x */
#pragma omp simd
    for (int i = 0; i < nd->kp; ++i) {
      s[i] += lj[i], product[i] *= (double)log_phi[i];
      vj[i] = lj[i] - sqrt2 * vj[i];
    }
  }
  double least = 1.0;
  for (int i = 0; i < nd->k_nodes; ++i) least = product[i] < least ? product[i] : least;
  if (!logs && least >= k->product_floor) {
#pragma omp simd
    for (int i = 0; i < nd->kp; ++i) nd->log_f[i] = (REAL)log(product[i]);
    return;
  }
  double log_f[MAX_NODES] = {0};
  for (int j = 0; j < nd->kept; ++j) {
    phi_terms(neg_shift, -xm[j], nd->kp, x, lam, log_phi, WITH_LOG, k);
#pragma omp simd
    for (int i = 0; i < nd->kp; ++i) log_f[i] += log_phi[i];
  }
  for (int i = 0; i < nd->kp; ++i) nd->log_f[i] = (REAL)log_f[i];
}

/* d log P / d m_j = sum_k omega_k lam_jk (1 - (u_jk + lam_jk) / S_k), with the weights omega_k and
   omega_k / S_k (zero past the nodes); acc: kept_p entries. */
static void node_gradient(const Nodes *nd, const REAL *omega, const REAL *omega_per_s, REAL *acc) {
  if (!nd->by_node) {
    for (int j = 0; j < nd->kept_p; ++j) acc[j] = 0;
    for (int i = 0; i < nd->k_nodes; ++i) {
      const REAL *lk = nd->lam + (size_t)i * nd->kept_p, *vk = nd->v + (size_t)i * nd->kept_p;
      const REAL w = omega[i], w_per_s = omega_per_s[i];
#pragma omp simd
      for (int j = 0; j < nd->kept_p; ++j) acc[j] += lk[j] * (w - vk[j] * w_per_s);
    }
    return;
  }
  for (int j = 0; j < nd->kept; ++j) {
    const REAL *lj = nd->lam + (size_t)j * nd->kp, *vj = nd->v + (size_t)j * nd->kp;
    REAL sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < nd->kp; ++i) sum += lj[i] * (omega[i] - vj[i] * omega_per_s[i]);
    acc[j] = sum;
  }
}

/* One row: log P (log Q with complement), its gradient with respect to m (grad, C entries, 0 in
   the true column and for rivals saturated at every node) and the rule (mu, offsets and log
   weights, 2 n each).  xr: the rivals' x at t = 0 padded with the sentinel to rp = PAD(r)
   entries, with their columns idx (r); work: 4 max(rp, PAD(K)) + 2 max(K rp, PAD(K) r) REALs;
   kept_idx: r columns.  The complement differs in the true class's factor only: Phi(t) for
   Phi(-t) (sign -1), which turns lam(-t) in Newton's slope into + lam(t), Newton's start (see
   newton_start) and the probes' half-width; the gradient formula is the same. */
static REAL one_row(const REAL *xr, const int64_t *idx, int r, int n, int complement, const double *hermite_x,
                    const double *hermite_log_w, REAL *grad, REAL *mu_out, REAL *offsets_out,
                    REAL *log_w_out, REAL *work, int64_t *kept_idx, const Constants *k) {
  const int rp = PAD(r), k_nodes = 2 * n, kp = PAD(k_nodes), wide = rp > kp ? rp : kp;
  const double sign = complement ? -1.0 : 1.0, secant = k->secant[complement != 0];
  const double sqrt2 = k->sqrt2, inv_sqrt2 = k->inv_sqrt2;
  REAL *x = work, *lam = work + wide, *log_phi = work + 2 * wide, *xm = work + 3 * wide;
  REAL *node_lam = work + 4 * wide;
  /* Newton's method on log h; the curvature is floored at 1/2 (see _mode).  The sums are over
     the rivals only: lam of the complement's Phi(t) may exceed them by 1e30. */
  double t = newton_start(xr, rp, sign, k), curvature = 1.0;
  for (int it = 0; it < k->newton_max_iter; ++it) {
    phi_terms(xr, (REAL)(t * inv_sqrt2), rp, x, lam, NULL, LAM_ONLY, k);
    double s = 0.0, big_p = 0.0, big_neg_q = 0.0;
#pragma omp simd reduction(+ : s, big_p, big_neg_q)
    for (int j = 0; j < rp; ++j) {
      REAL l = lam[j], w = l - (REAL)sqrt2 * x[j]; /* u + lam */
      REAL p = l * w;
      s += l, big_p += p, big_neg_q += l - p * (w + l);
    }
    /* the true class's factor Phi(u0), u0 = -sign t: slope -sign lam0, curvature p0 */
    double lam0 = mills_at(sign * t * inv_sqrt2, NULL, k);
    double p0 = lam0 * (lam0 - sign * t);
    if (s < DBL_MIN) s = DBL_MIN;
    double ratio = big_p / s;
    double d1 = s - sign * lam0 - ratio;
    curvature = big_neg_q / s + big_p + p0 + ratio * ratio;
    if (curvature < 0.5) curvature = 0.5;
    double step = d1 / curvature;
    t += step;
    if (step * d1 <= k->newton_tol * k->newton_tol) break;
  }
  const double mu = t, tau = 1.0 / sqrt(curvature);
  /* The rivals' x at the mode; the small offsets are subtracted last (see _log_h). */
  const REAL shift = (REAL)(mu * inv_sqrt2);
#pragma omp simd
  for (int j = 0; j < rp; ++j) xm[j] = xr[j] - shift;
  /* One scale per side from the drop of log h at mu -+ secant tau. */
  double h0 = log_h_at(xm, rp, mu, 0.0, sign, x, lam, log_phi, k), scale[2];
  const double least_drop = secant * secant / 2.0 / 64.0;
  for (int side = 0; side < 2; ++side) {
    double drop = h0 - log_h_at(xm, rp, mu, (side ? secant : -secant) * tau, sign, x, lam, log_phi, k);
    if (!(drop >= least_drop)) drop = least_drop;
    scale[side] = tau * secant / sqrt(drop);
  }
  const double log_scale[2] = {log(scale[0]), log(scale[1])};
  /* The nodes; the true class's factor Phi(-sign t) at each, x = sign t / sqrt2. */
  REAL true_x[MAX_NODES], true_lam[MAX_NODES], true_log_phi[MAX_NODES], true_center[MAX_NODES];
  double low_offset = 0.0; /* the leftmost node */
  for (int i = 0; i < kp; ++i) {
    if (i >= k_nodes) {
      true_center[i] = SENTINEL;
      continue;
    }
    int side = i >= n, h = side ? i - n : i;
    double offset = scale[side] * (side ? hermite_x[h] : -hermite_x[h]);
    offsets_out[i] = (REAL)offset;
    log_w_out[i] = (REAL)(hermite_log_w[h] + log_scale[side]);
    true_center[i] = (REAL)(sign * (mu + offset) * inv_sqrt2);
    if (offset < low_offset) low_offset = offset;
  }
  phi_terms(true_center, 0, kp, true_x, true_lam, true_log_phi, WITH_LOG, k);
  *mu_out = (REAL)mu;
  /* Rivals saturated at every node (x below the saturation point at the leftmost node, where x
     is largest) add log Phi = 0 and lam < 1e-37: left out, with a zero gradient. */
  int kept = 0;
  const REAL low_shift = (REAL)(low_offset * inv_sqrt2);
  for (int j = 0; j < r; ++j)
    if (xm[j] - low_shift > k->saturated) xm[kept] = xm[j], kept_idx[kept] = idx[j], ++kept;
  Nodes nd = {.lam = node_lam, .by_node = r < BY_NODE_BELOW, .kept = kept, .kept_p = PAD(kept),
              .k_nodes = k_nodes, .kp = kp};
  nd.v = node_lam + (nd.by_node ? (size_t)kept * kp : (size_t)k_nodes * nd.kept_p); /* (size_t before the product) */
  node_terms(&nd, xm, offsets_out, x, lam, log_phi, k);
  for (int i = 0; i < kp; ++i) /* a node where every rival's lam underflows gets weight 0, not nan */
    nd.s[i] = i >= k_nodes ? 1 : (nd.s[i] >= TINY ? nd.s[i] : TINY);
  REAL terms[MAX_NODES];
#pragma omp simd
  for (int i = 0; i < kp; ++i) /* the padding nodes: far below the others, weight exp(-1e30) = 0 */
    terms[i] = i < k_nodes ? nd.log_f[i] + true_log_phi[i] + log_w_out[i] + LOG(nd.s[i]) : SENTINEL;
  /* log P by log-sum-exp; the node weights omega_k = exp(terms_k - log P) relative to the largest
     term, so that a log P of -1e4 (the far tail) does not round them all alike */
  REAL best = terms[0], total = 0, omega[MAX_NODES], omega_per_s[MAX_NODES];
  for (int i = 1; i < k_nodes; ++i) best = terms[i] > best ? terms[i] : best;
#pragma omp simd reduction(+ : total)
  for (int i = 0; i < kp; ++i) {
    omega[i] = EXP(terms[i] - best);
    total += omega[i];
  }
  const double log_p = best + log(total);
  if (grad) {
    const REAL inv_total = 1 / total;
#pragma omp simd
    for (int i = 0; i < kp; ++i) {
      omega[i] *= inv_total;
      omega_per_s[i] = omega[i] / nd.s[i];
    }
    node_gradient(&nd, omega, omega_per_s, lam);
    for (int j = 0; j < kept; ++j) grad[kept_idx[j]] = lam[j];
  }
  return (REAL)log_p;
}

/* phi_terms for one entry in a lane: x clamped up to the saturation point, Phi and lam there; returns
   the clamped x and sets *past where x is past the switch point (which the lanes leave to one_row) */
static inline REAL lane_terms(REAL x, REAL *phi, REAL *lam, int *past, const Constants *k) {
  x = x < k->saturated ? k->saturated : x;
  *past = x > k->tail_start;
  phi_and_lam(x < k->tail_start ? x : k->tail_start, phi, lam, (REAL)k->log_inv_sqrt_2pi);
  return x;
}

/* Rows side by side: LANES rows of the rule for P or Q, one row per vector lane, for few rivals
   (r < LANES_BELOW).  There a row's node terms are a few vectors and the rest of one_row (Newton's
   start and steps, the probes, the scalar logs and exponentials of the rule, the sums' reductions)
   was most of its time; in lanes that work runs in vectors too.  Each lane does one_row's
   arithmetic (the node sums in the same order: the same bits; the sums over the rivals of Newton's
   steps and the probes, and over the nodes, in another order: round-off) and gives the same rule.
   A lane that leaves the ground these loops cover (a term past the switch point, a product below
   the floor, Newton's start in Acklam's tail) is flagged in `ok` for one_row to redo.
   xr: [j][LANES] the rivals' x at t = 0 (r of them, in column order); sign: 1 for P, -1 for Q.
   Per lane l: log_v[l] (log P or log Q), grad[j * LANES + l] (d/dm_j; NULL: no gradient), mu[l],
   offsets and log_w [l * 2 n + i].  work: 2 r 2n LANES + r LANES REALs. */
#define LANES WIDTH
static void lane_rows(const REAL *xr, int r, const double *sign, int n, const double *hermite_x,
                      const double *hermite_log_w, REAL *grad, double *log_v, REAL *mu_out, REAL *offsets,
                      REAL *log_w, int *ok, REAL *work, const Constants *k) {
  const int k_nodes = 2 * n;
  const REAL saturated = k->saturated, sqrt2_r = (REAL)k->sqrt2;
  const REAL log_scale_c = (REAL)k->log_inv_sqrt_2pi;
  const double sqrt2 = k->sqrt2, inv_sqrt2 = k->inv_sqrt2, tol2 = k->newton_tol * k->newton_tol;
  int bad[LANES] = {0};
  double t[LANES], curvature[LANES], start[LANES], sgn[LANES];
  REAL top[LANES], count[LANES], value[LANES], lam0[LANES], pv[LANES], pl[LANES]; /* pv, pl: Phi and lam */
  int past[LANES];
  for (int l = 0; l < LANES; ++l) sgn[l] = sign[l], curvature[l] = 1.0, top[l] = xr[l], count[l] = 0;
  /* Newton's start (newton_start) */
  for (int j = 1; j < r; ++j)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) top[l] = xr[j * LANES + l] > top[l] ? xr[j * LANES + l] : top[l];
  for (int j = 0; j < r; ++j)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) count[l] += 2 * half_erfc(top[l] - xr[j * LANES + l], k);
  double bump[LANES], beta2[LANES], arg[LANES];
  const double *a = k->ndtri_a, *b = k->ndtri_b;
#pragma omp simd
  for (int l = 0; l < LANES; ++l) {
    const double cnt = count[l] < 2 ? 2 : count[l], p = 1.0 - 1.0 / cnt, q = p - 0.5, rr = q * q;
    bad[l] |= p > k->ndtri_split; /* Acklam's tail: one_row */
    const double c = (((((a[0] * rr + a[1]) * rr + a[2]) * rr + a[3]) * rr + a[4]) * rr + a[5]) * q /
                     (((((b[0] * rr + b[1]) * rr + b[2]) * rr + b[3]) * rr + b[4]) * rr + 1.0);
    beta2[l] = 1.0 / (1.0 + c * c), bump[l] = c + sqrt2 * top[l];
    arg[l] = sgn[l] * bump[l] * inv_sqrt2;
  }
#define LANE_MILLS(x_of_l)                                                                              \
  _Pragma("omp simd") for (int l = 0; l < LANES; ++l) {                                                 \
    double xi = (x_of_l);                                                                                \
    xi = xi < k->saturated ? k->saturated : xi;                                                          \
    bad[l] |= xi > k->tail_start;                                                                        \
    phi_and_lam((REAL)(xi > k->tail_start ? k->tail_start : xi), &value[l], &lam0[l], log_scale_c);     \
  }
  LANE_MILLS(arg[l])
#pragma omp simd
  for (int l = 0; l < LANES; ++l) {
    const double lam = lam0[l];
    double p = lam * (lam - sgn[l] * bump[l]);
    p = p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
    start[l] = bump[l] - sgn[l] * beta2[l] * lam / (1.0 + beta2[l] * p);
    t[l] = top[l] * inv_sqrt2; /* the water level (for P with top > 0) */
  }
  for (int step = 0; step < k->water_steps; ++step) {
    REAL excess[LANES] = {0}, active[LANES] = {0}, shift[LANES];
    for (int l = 0; l < LANES; ++l) shift[l] = (REAL)(t[l] * inv_sqrt2);
    for (int j = 0; j < r; ++j)
#pragma omp simd
      for (int l = 0; l < LANES; ++l) {
        const REAL e = xr[j * LANES + l] - shift[l];
        excess[l] += e > 0 ? e : 0, active[l] += e > 0 ? 1 : 0;
      }
    /* (simd, as every lane loop with arithmetic in it: left to the SLP vectoriser, the two halves of this
       loop's doubles were contracted to FMAs differently, and a row's bits depended on its lane) */
#pragma omp simd
    for (int l = 0; l < LANES; ++l) t[l] = (excess[l] * sqrt2 + active[l] * t[l]) / (active[l] + 1.0);
  }
  for (int l = 0; l < LANES; ++l)
    t[l] = sgn[l] < 0 || top[l] <= 0 ? start[l] : (t[l] > start[l] ? t[l] : start[l]);
  /* Newton's method on log h (one_row), each lane until its own stop */
  int active[LANES], any = 1;
  for (int l = 0; l < LANES; ++l) active[l] = 1;
  for (int it = 0; it < k->newton_max_iter && any; ++it) {
    double s[LANES] = {0}, big_p[LANES] = {0}, big_neg_q[LANES] = {0};
    REAL shift[LANES];
    for (int l = 0; l < LANES; ++l) shift[l] = (REAL)(t[l] * inv_sqrt2);
    for (int j = 0; j < r; ++j)
#pragma omp simd
      for (int l = 0; l < LANES; ++l) {
        const REAL x = lane_terms(xr[j * LANES + l] - shift[l], &pv[l], &pl[l], &past[l], k);
        const REAL lam = pl[l], w = lam - sqrt2_r * x, p = lam * w;
        bad[l] |= past[l];
        s[l] += lam, big_p[l] += p, big_neg_q[l] += lam - p * (w + lam);
      }
    LANE_MILLS(sgn[l] * t[l] * inv_sqrt2)
    any = 0;
    for (int l = 0; l < LANES; ++l) {
      if (!active[l]) continue;
      const double lam = lam0[l], p0 = lam * (lam - sgn[l] * t[l]), sl = s[l] < DBL_MIN ? DBL_MIN : s[l];
      const double ratio = big_p[l] / sl, d1 = sl - sgn[l] * lam - ratio;
      double curv = big_neg_q[l] / sl + big_p[l] + p0 + ratio * ratio;
      curv = curv < 0.5 ? 0.5 : curv;
      const double step = d1 / curv;
      t[l] += step, curvature[l] = curv;
      active[l] = !(step * d1 <= tol2);
      any |= active[l];
    }
  }
  /* the rivals' x at the mode, and log h there and at the probes (log_h_at) */
  REAL *xm = work, *node_lam = work + (size_t)r * LANES, *node_v = node_lam + (size_t)r * k_nodes * LANES;
  double tau[LANES], h[3][LANES];
  for (int l = 0; l < LANES; ++l) {
    const REAL shift = (REAL)(t[l] * inv_sqrt2);
    for (int j = 0; j < r; ++j) xm[j * LANES + l] = xr[j * LANES + l] - shift;
    tau[l] = 1.0 / sqrt(curvature[l]);
  }
  for (int probe = 0; probe < 3; ++probe) { /* at mu, mu - secant tau, mu + secant tau */
    double offset[LANES], s[LANES] = {0}, product[LANES];
    REAL shift[LANES];
    for (int l = 0; l < LANES; ++l) {
      offset[l] = probe ? (probe == 2 ? 1 : -1) * k->secant[sgn[l] < 0] * tau[l] : 0.0;
      shift[l] = (REAL)(offset[l] * inv_sqrt2), product[l] = 1.0;
    }
    for (int j = 0; j < r; ++j)
#pragma omp simd
      for (int l = 0; l < LANES; ++l) {
        lane_terms(xm[j * LANES + l] - shift[l], &pv[l], &pl[l], &past[l], k);
        bad[l] |= past[l];
        s[l] += pl[l], product[l] *= (double)pv[l];
      }
    LANE_MILLS(sgn[l] * (t[l] + offset[l]) * inv_sqrt2)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      bad[l] |= !(product[l] >= k->product_floor);
      h[probe][l] = log(product[l] >= k->product_floor ? product[l] : 1.0) + log((double)value[l]) +
                    log(s[l] > DBL_MIN ? s[l] : DBL_MIN);
    }
  }
  /* one scale per side, the nodes and their weights; the true class's factor at each node */
  REAL neg_shift[MAX_NODES][LANES], true_log_phi[MAX_NODES][LANES], log_wl[MAX_NODES][LANES];
  REAL low_shift[LANES];
  double scale[2][LANES], log_scale[2][LANES];
  const double least_drop_p = k->secant[0] * k->secant[0] / 2.0 / 64.0, least_drop_q = k->secant[1] * k->secant[1] / 2.0 / 64.0;
  for (int l = 0; l < LANES; ++l) {
    const double secant = k->secant[sgn[l] < 0], least_drop = sgn[l] < 0 ? least_drop_q : least_drop_p;
    for (int side = 0; side < 2; ++side) {
      double drop = h[0][l] - h[side ? 2 : 1][l];
      if (!(drop >= least_drop)) drop = least_drop;
      scale[side][l] = tau[l] * secant / sqrt(drop);
    }
  }
#pragma omp simd
  for (int l = 0; l < LANES; ++l) log_scale[0][l] = log(scale[0][l]), log_scale[1][l] = log(scale[1][l]);
  for (int l = 0; l < LANES; ++l) {
    double low_offset = 0.0;
    for (int i = 0; i < k_nodes; ++i) {
      const int side = i >= n, hh = side ? i - n : i;
      const double offset = scale[side][l] * (side ? hermite_x[hh] : -hermite_x[hh]);
      offsets[l * k_nodes + i] = (REAL)offset;
      log_wl[i][l] = log_w[l * k_nodes + i] = (REAL)(hermite_log_w[hh] + log_scale[side][l]);
      neg_shift[i][l] = (REAL)(-offsets[l * k_nodes + i] * inv_sqrt2); /* from the REAL offset, as one_row */
      true_log_phi[i][l] = (REAL)(sgn[l] * (t[l] + offset) * inv_sqrt2); /* the centre, for now */
      if (offset < low_offset) low_offset = offset;
    }
    low_shift[l] = (REAL)(low_offset * inv_sqrt2);
    mu_out[l] = (REAL)t[l];
  }
  for (int i = 0; i < k_nodes; ++i)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      lane_terms(true_log_phi[i][l], &pv[l], &pl[l], &past[l], k);
      bad[l] |= past[l];
      true_log_phi[i][l] = LOG(pv[l]);
    }
  /* The node terms rival by rival (one_row's by-node layout, the same order); a rival saturated at
     every node is left out (one_row's `kept`): it adds 0 to S and 1 to the product, and its
     gradient is 0. */
  REAL s_node[MAX_NODES][LANES];
  double product[MAX_NODES][LANES];
  for (int i = 0; i < k_nodes; ++i)
    for (int l = 0; l < LANES; ++l) s_node[i][l] = 0, product[i][l] = 1.0;
  for (int j = 0; j < r; ++j) {
    int kept[LANES];
    for (int l = 0; l < LANES; ++l) kept[l] = xm[j * LANES + l] - low_shift[l] > saturated;
    for (int i = 0; i < k_nodes; ++i) {
      REAL *lam_out = node_lam + ((size_t)j * k_nodes + i) * LANES, *v_out = node_v + ((size_t)j * k_nodes + i) * LANES;
#pragma omp simd
      for (int l = 0; l < LANES; ++l) {
        const REAL x = lane_terms(neg_shift[i][l] + xm[j * LANES + l], &pv[l], &pl[l], &past[l], k);
        bad[l] |= kept[l] & past[l];
        const REAL lam = kept[l] ? pl[l] : 0, v = kept[l] ? pv[l] : 1;
        s_node[i][l] += lam, product[i][l] *= (double)v;
        lam_out[l] = lam, v_out[l] = kept[l] ? lam - sqrt2_r * x : 0; /* a rival left out: no term at all */
      }
    }
  }
  /* log P by log-sum-exp over the nodes, the node weights omega, the gradient */
  REAL terms[MAX_NODES][LANES], best[LANES], total[LANES] = {0};
  for (int i = 0; i < k_nodes; ++i)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      bad[l] |= !(product[i][l] >= k->product_floor);
      const REAL s = s_node[i][l] >= TINY ? s_node[i][l] : TINY;
      s_node[i][l] = s;
      terms[i][l] = (REAL)log(product[i][l]) + true_log_phi[i][l] + log_wl[i][l] + LOG(s);
    }
  for (int l = 0; l < LANES; ++l) best[l] = terms[0][l];
  for (int i = 1; i < k_nodes; ++i)
    for (int l = 0; l < LANES; ++l) best[l] = terms[i][l] > best[l] ? terms[i][l] : best[l];
  for (int i = 0; i < k_nodes; ++i)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      terms[i][l] = EXP(terms[i][l] - best[l]); /* omega, unnormalised */
      total[l] += terms[i][l];
    }
#pragma omp simd
  for (int l = 0; l < LANES; ++l) log_v[l] = (REAL)(best[l] + log((double)total[l])); /* REAL, as one_row's */
  for (int l = 0; l < LANES; ++l) ok[l] = !bad[l];
  if (!grad) return;
  REAL inv_total[LANES];
  for (int l = 0; l < LANES; ++l) inv_total[l] = 1 / total[l];
  for (int i = 0; i < k_nodes; ++i)
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      terms[i][l] *= inv_total[l];      /* omega */
      s_node[i][l] = terms[i][l] / s_node[i][l]; /* omega / S */
    }
  for (int j = 0; j < r; ++j) {
    REAL acc[LANES] = {0};
    for (int i = 0; i < k_nodes; ++i) {
      const REAL *lam = node_lam + ((size_t)j * k_nodes + i) * LANES, *v = node_v + ((size_t)j * k_nodes + i) * LANES;
#pragma omp simd
      for (int l = 0; l < LANES; ++l) acc[l] += lam[l] * (terms[i][l] - v[l] * s_node[i][l]);
    }
    for (int l = 0; l < LANES; ++l) grad[j * LANES + l] = acc[l];
  }
}
#undef LANE_MILLS

/* What a call writes per row (the caller's per-sample loss where it asks for one): the row's log P
   or log Q (see the ways below) and its gradient, or 1 - P, or -log P and their gradients. */
enum { KIND_VALUE, KIND_ONE_MINUS_P, KIND_MINUS_LOG_P };
/* A row's way: the rule for P, the complement's rule for Q, the union bound of Q, or none (far in
   the tail, a rival more than K_FAR_MARGIN ahead: the caller's closed form). */
enum { WAY_P, WAY_Q, WAY_UNION, WAY_FAR };

/* The way of a row (see log_win_and_lose in _exact_quadrature.py): with U = sum_j Phi(-m_j / sqrt2)
   (in x units, Phi(-m_j / sqrt2) = erfc(-x_j / sqrt2) / 2), the complement where U is below the
   union bound, and the union bound itself where also every margin passes `least`; the rule for P
   otherwise, unless a rival is far ahead.  top: the largest x, -m_1 / sqrt2. */
static int choose_way(const REAL *xr, int rp, REAL top, double least, const Constants *k) {
  const REAL inv_sqrt2 = (REAL)k->inv_sqrt2;
  const double least_margin = -k->sqrt2 * top;
  if (least_margin <= 0 && k->union_bound <= 0.5) /* a rival level or ahead: U >= Phi(0), no sum needed */
    return least_margin < -k->far_margin ? WAY_FAR : WAY_P;
  double u = 0.0;
#pragma omp simd reduction(+ : u)
  for (int j = 0; j < rp; ++j) u += half_erfc(-xr[j] * inv_sqrt2, k); /* the padding adds 0 */
  if (u < k->union_bound) return least_margin > least ? WAY_UNION : WAY_Q;
  return least_margin < -k->far_margin ? WAY_FAR : WAY_P;
}

/* The union bound of Q in closed form (the rows far in the tail, see log_win_and_lose), in double:
   log Q = log sum_j Phi(-m_j / sqrt2), where Phi(-m_j / sqrt2) is Phi(u) at u = xr_j, x = -xr_j / sqrt2,
   and the gradient of what `kind` asks for with respect to m, from
   dQ / dm_j = -phi(u_j) / sqrt2 = -lam(u_j) Phi(u_j) / sqrt2: times exp(log Phi(u_j) - log Q) for log Q,
   exp(log Phi(u_j)) for Q and exp(log Phi(u_j) - log P) for -log P, so that neither a difference of two
   logs of size m^2 / 4 (their rounding alone is 1e7 at m = 1e12 in double) nor an overflow enters.
   work: 2 rp doubles.  Returns log Q (-inf where every Phi underflows: margins past 1e154 in double). */
static double union_row(const REAL *xr, const int64_t *idx, int r, int kind, REAL *grad, double *work,
                        const Constants *k) {
  const int rp = PAD(r);
  const double saturated = k->saturated, tail_start = k->tail_start, inv_sqrt2 = k->inv_sqrt2;
  const double log_scale = k->log_inv_sqrt_2pi;
  double *log_phi = work, *lam = work + rp;
#pragma omp simd
  for (int j = 0; j < rp; ++j) {
    double x = -(double)xr[j] * inv_sqrt2;
    x = x < saturated ? saturated : x;
    const double body = x < tail_start ? x : tail_start, phi = 0.5 * erfc(body);
    log_phi[j] = log(phi);
    lam[j] = exp(log_scale - body * body) / phi;
  }
  double best = -INFINITY, total = 0.0;
  for (int j = 0; j < r; ++j) {
    const double x = -(double)xr[j] * inv_sqrt2;
    if (x > tail_start) { /* the series in double (log Phi ~ -x^2 is no REAL there) */
      double y = 1.0 / (x * x), series = 0.0;
      for (int i = k->tail_terms - 1; i >= 0; --i) series = (series + k->tail_coeffs[i]) * y;
      log_phi[j] = series - log(x) - x * x - k->log_2_sqrt_pi;
      lam[j] = k->sqrt2 * x * exp(-series);
    }
    best = log_phi[j] > best ? log_phi[j] : best;
  }
  for (int j = 0; j < r; ++j) total += exp(log_phi[j] - best);
  const double log_q = best > -INFINITY ? best + log(total) : -INFINITY;
  if (grad) {
    const double offset = kind == KIND_VALUE ? log_q : (kind == KIND_MINUS_LOG_P ? log1p(-exp(log_q)) : 0.0);
    const int zero = !(log_q > -INFINITY); /* Q and its derivatives are 0 */
    for (int j = 0; j < r; ++j)
      grad[idx[j]] = zero ? 0 : (REAL)(-inv_sqrt2 * lam[j] * exp(log_phi[j] - offset));
  }
  return log_q;
}

/* The per-sample loss of `kind` from a row's log P (way WAY_P) or log Q (WAY_Q), and the factor that
   turns the gradient of that log into the loss's: 1 - P = -expm1(log P) or exp(log Q), and
   -log P = -log P or -log1p(-exp(log Q)). */
static double row_loss(double value, int way, int kind, double *factor) {
  if (kind == KIND_VALUE) return *factor = 1.0, value;
  if (way == WAY_P) {
    if (kind == KIND_ONE_MINUS_P) return *factor = -exp(value), -expm1(value);
    return *factor = -1.0, -value;
  }
  const double q = exp(value);
  if (kind == KIND_ONE_MINUS_P) return *factor = q, q;
  const double log_p = log1p(-q);
  return *factor = exp(value - log_p), -log_p; /* d(-log P) = (Q / P) d log Q */
}

/* The columns of a row's r rivals: rival q is column q below the true class y and q + 1 above it. */
static inline void rival_columns(int64_t *idx, int r, int64_t y) {
  for (int q = 0; q < r; ++q) idx[q] = q + (q >= y);
}

/* A row's gradient g (C entries, d log P / d m_j in the rivals' columns) turned into that of what the
   call gives: d/ds_j = -scale d/dm_j for the rivals (0 where clipped), d/ds_y = scale sum_j d/dm_j,
   times the loss's factor and the reduction's. */
static void finish_gradient(REAL *g, int64_t y, int64_t c, const char *clipped, int logits, double scale,
                            double factor_g, double per_row) {
  const REAL times = (REAL)((logits ? -scale : 1.0) * factor_g * per_row);
  REAL total = 0;
  for (int part = 0; part < 2; ++part) {
    const int64_t from = part ? y + 1 : 0, to = part ? c : y;
#pragma omp simd reduction(+ : total)
    for (int64_t col = from; col < to; ++col) {
      const REAL value = clipped[col - part] ? 0 : g[col];
      total += value, g[col] = value * times;
    }
  }
  if (logits) g[y] = -total * times;
}

/* Rows [0, b) of scores (B, C) with targets (B,).  With scale = 0 the scores are the margins m (zero in
   the true column) and the gradient is with respect to m; with scale > 0 they are logits s, the margins
   are m_j = min(s_y - s_j, clip) scale and the gradient is with respect to s (none through a clipped
   margin); row_scale and row_clip (B,), where not NULL, give each row its own scale and clip instead
   (packed runs with their own sigma and margin in one call).  Per row: value (B,) as `kind` says (see KIND_*), its gradient grad (B, C) or NULL, and the
   rule: mu (B,), offsets and log_weights (B, 2 n) (zeros where the rule is not used).  ways (B,):
   NULL for the rule for P everywhere, else read, or written when choose is set (see WAY_*; `least`:
   the smallest margin of a union-bound row, see _ways in _exact_integral.py).  A row whose target
   is ignore_index gets zeros; another target outside [0, C) stops the call before any work (counted).  A far
   row's 1 - P is 1 with no gradient; its log P or -log P is left (zeros) to the caller.  With
   reduction 1 (mean) or 2 (sum), value[b] is the mean over the rows whose target is not ignore_index or the
   sum (in double, in row order: the same bits whatever the threads) and the gradient is that of the
   mean or sum.  With standardize, the logits are standardised first (see below; stats: mean,
   std + eps and 1 / ((count - 1) std)).  counts: rows whose target is not ignore_index, rows with another target outside
   [0, C), far rows left to the caller.  constants: see the enum above.  2 n <= MAX_NODES.
   Returns 0, -1 if out of memory, -2 for too many nodes, -3 for a series longer than MAX_TAIL_TERMS. */
int SUFFIX(lossbench_exact_rows)(const REAL *scores, const int64_t *target, int64_t *ways, int choose,
                                 int64_t ignore_index, int64_t b, int64_t c, double scale, double clip,
                                 const double *row_scale, const double *row_clip, int kind,
                                 int n, const double *hermite_x, const double *hermite_log_w, const double *constants,
                                 double least, int reduction, int standardize, double eps, REAL *value, REAL *grad,
                                 REAL *mu, REAL *offsets, REAL *log_weights, int64_t *counts, double *stats,
                                 int threads) {
  int64_t valid = 0, bad = 0, far = 0;
  const int r = (int)c - 1, rp = PAD(r), k_nodes = 2 * n;
  if (k_nodes > MAX_NODES) return -2;
  Constants k;
  if (read_constants(constants, &k)) return -3;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t y = target[i];
    const int in_range = y >= 0 && y < c;
    valid += in_range && y != ignore_index, bad += !in_range && y != ignore_index;
  }
  counts[0] = valid, counts[1] = bad, counts[2] = 0;
  if (bad) return 0;
  const double per_row = reduction == 1 ? 1.0 / (double)valid : 1.0; /* d reduced / d value_i */
  /* Batch standardisation x' = (x - mean) / (std + eps), one mean and unbiased std over the logits of
     the rows whose target is not ignore_index (_standardize in _exact_quadrature.py): the margins only see
     differences, so it divides them by d = std + eps (scale / d, clip d); its gradient adds
     -(A / d) (x - mean) / ((count - 1) std) on those rows, A = sum g (x - mean) (the mean's own term
     vanishes: each row's gradient sums to 0). */
  double mean = 0.0, d = 1.0, per_std = 0.0;
  const int logits = scale > 0; /* (read before a nan spread makes the scale nan: scores are logits still) */
  if (standardize) {
    double sum = 0.0, squares = 0.0, count = (double)valid * (double)c;
    for (int64_t i = 0; i < b; ++i)
      if (target[i] != ignore_index)
        for (int64_t col = 0; col < c; ++col) sum += scores[i * c + col];
    count = count < 2 ? 2 : count;
    mean = sum / count;
    for (int64_t i = 0; i < b; ++i)
      if (target[i] != ignore_index)
        for (int64_t col = 0; col < c; ++col) squares += (scores[i * c + col] - mean) * (scores[i * c + col] - mean);
    /* torch's clamp_min(tiny), which passes a nan (a non-finite score) on: so does !(var <= TINY) */
    const double var = squares / (count - 1), std = sqrt(!(var <= TINY) ? var : TINY);
    d = std + eps, per_std = !(var <= TINY) ? 1.0 / ((count - 1) * std) : 0.0;
    scale /= d, clip *= d;
  }
  stats[0] = mean, stats[1] = d, stats[2] = per_std;
  /* Each thread's memory: the rivals' x, the row's work space (see one_row; union_row's doubles fit in
     it), the columns, whether each margin is clipped; with few rivals, the lanes' (see lane_rows).  One
     block for all threads, taken before any work (a thread without its memory could not take part in
     the rows' split). */
  const size_t node_terms = (size_t)k_nodes * rp > (size_t)PAD(k_nodes) * r ? (size_t)k_nodes * rp : (size_t)PAD(k_nodes) * r;
  const size_t work_size = 4 * (size_t)(rp > PAD(k_nodes) ? rp : PAD(k_nodes)) + 2 * node_terms;
  const int in_lanes = r >= 1 && r < LANES_BELOW;
  const size_t lane_size = in_lanes ? (size_t)LANES * (2 * (size_t)r * k_nodes + 3 * (size_t)r + 2 * (size_t)k_nodes) : 0;
  size_t size = (rp + work_size + lane_size) * sizeof(REAL) + 2 * (size_t)r * sizeof(int64_t) + (size_t)c +
                (in_lanes ? (size_t)LANES * r : 0);
  size = (size + 63) / 64 * 64; /* each thread's block aligned for any of its types */
  threads = threads < 1 ? 1 : threads;
  char *pool = (char *)malloc(size * (size_t)threads);
  if (!pool) return -1;
#pragma omp parallel num_threads(threads) reduction(+ : far)
  {
    REAL *xr = (REAL *)(pool + size * (size_t)omp_get_thread_num());
    REAL *work = xr + rp;
    /* the lanes: their rows' x, gradients, rules and work space, then (after the columns) clipped */
    REAL *lane_xr = work + work_size, *lane_grad = lane_xr + (size_t)r * LANES;
    REAL *lane_offsets = lane_grad + (size_t)r * LANES, *lane_log_w = lane_offsets + (size_t)k_nodes * LANES;
    REAL *lane_work = lane_log_w + (size_t)k_nodes * LANES;
    int64_t *idx = (int64_t *)(work + work_size + lane_size), *kept_idx = idx + r;
    char *clipped = (char *)(kept_idx + r), *lane_clipped = clipped + c;
#pragma omp for schedule(static)
    for (int64_t block = 0; block < b; block += LANES) {
      const int64_t block_end = block + LANES < b ? block + LANES : b;
      int64_t lane_row[LANES];
      double lane_scale[LANES];
      int lane_way[LANES], lanes = 0;
      for (int64_t i = block; i < block_end; ++i) {
        const REAL *row = scores + i * c;
        const int64_t y = target[i];
        REAL *g = grad ? grad + i * c : NULL;
        REAL *rule = offsets + i * k_nodes, *rule_w = log_weights + i * k_nodes;
        int way = ways && !choose ? (int)ways[i] : WAY_P;
        if (g)
          for (int64_t col = 0; col < c; ++col) g[col] = 0;
        if (y == ignore_index || y < 0 || y >= c) { /* (the latter: ignore_index, see above) */
          value[i] = 0, mu[i] = 0;
          for (int q = 0; q < k_nodes; ++q) rule[q] = 0, rule_w[q] = 0;
          if (ways && choose) ways[i] = WAY_P;
          continue;
        }
        /* x = -m_j / sqrt2: from logits (s_j - s_y) scale / sqrt2, the clip in logit units; rival j is
           column j below y and j + 1 above (two loops without a branch: vectorised) */
        const double row_s = row_scale ? row_scale[i] / d : scale, row_c = row_clip ? row_clip[i] * d : clip;
        const REAL factor = (REAL)(logits ? row_s * k.inv_sqrt2 : -k.inv_sqrt2);
        /* the clip compared in the logits' dtype, as the PyTorch path clamps (a tie keeps its gradient) */
        const REAL top = logits ? row[y] : 0, clip_r = (REAL)row_c, clipped_x = -clip_r * factor;
        REAL high = SENTINEL;
        int has_nan = 0;
        const int j = r;
        for (int part = 0; part < 2; ++part) {
          const int64_t from = part ? y + 1 : 0, to = part ? c : y;
#pragma omp simd reduction(max : high) reduction(| : has_nan)
          for (int64_t col = from; col < to; ++col) {
            const int cut = logits && top - row[col] > clip_r;
            const REAL value = cut ? clipped_x : (row[col] - top) * factor;
            xr[col - part] = value, clipped[col - part] = (char)cut;
            high = value > high ? value : high;
            has_nan |= value != value;
          }
        }
        if (has_nan) { /* a nan logit, or scale (validate=False): the row's loss and gradient nan, as torch's */
          value[i] = NAN, mu[i] = 0;
          for (int q = 0; q < k_nodes; ++q) rule[q] = 0, rule_w[q] = 0;
          if (g)
            for (int64_t col = 0; col < c; ++col) g[col] = NAN;
          if (ways && choose) ways[i] = WAY_P;
          continue;
        }
        rival_columns(idx, j, y);
        for (int pad = j; pad < rp; ++pad) xr[pad] = SENTINEL;
        if (ways && choose) ways[i] = way = choose_way(xr, rp, high, least, &k);
        double factor_g = 1.0, v;
        /* the rule in a lane (below), but for rows whose terms reach the far tail (a rival about
           tail_start ahead or behind), which the lanes would hand back to one_row */
        if (in_lanes && (way == WAY_P || way == WAY_Q) && high < k.tail_start - 1 && high > -k.tail_start - 1) {
          for (int q = 0; q < j; ++q) lane_xr[q * LANES + lanes] = xr[q];
          memcpy(lane_clipped + (size_t)lanes * r, clipped, (size_t)r);
          lane_row[lanes] = i, lane_scale[lanes] = row_s, lane_way[lanes++] = way;
          continue;
        }
        if (way == WAY_UNION) {
          v = union_row(xr, idx, j, kind, g, (double *)work, &k);
          value[i] = (REAL)(kind == KIND_VALUE ? v : (kind == KIND_ONE_MINUS_P ? exp(v) : -log1p(-exp(v))));
          mu[i] = 0;
          for (int q = 0; q < k_nodes; ++q) rule[q] = 0, rule_w[q] = 0;
        } else if (way == WAY_FAR) {
          /* log P < -far_margin^2 / 4: 1 - P is 1 to rounding and P's derivatives are 0 */
          far += kind != KIND_ONE_MINUS_P;
          value[i] = kind == KIND_ONE_MINUS_P ? 1 : 0;
          mu[i] = 0;
          for (int q = 0; q < k_nodes; ++q) rule[q] = 0, rule_w[q] = 0;
          continue;
        } else {
          v = one_row(xr, idx, j, n, way == WAY_Q, hermite_x, hermite_log_w, g, mu + i, rule, rule_w, work,
                      kept_idx, &k);
          value[i] = (REAL)row_loss(v, way, kind, &factor_g);
        }
        if (g) finish_gradient(g, y, c, clipped, logits, row_s, factor_g, per_row);
      }
      if (!lanes) continue;
      /* the block's rows of the rule side by side; the lanes left over repeat the first row */
      double sign[LANES], log_v[LANES];
      REAL lane_mu[LANES];
      int ok[LANES];
      for (int l = 0; l < LANES; ++l) {
        if (l >= lanes)
          for (int q = 0; q < r; ++q) lane_xr[q * LANES + l] = lane_xr[q * LANES];
        sign[l] = lane_way[l < lanes ? l : 0] == WAY_Q ? -1.0 : 1.0;
      }
      lane_rows(lane_xr, r, sign, n, hermite_x, hermite_log_w, grad ? lane_grad : NULL, log_v, lane_mu, lane_offsets,
                lane_log_w, ok, lane_work, &k);
      for (int l = 0; l < lanes; ++l) {
        const int64_t i = lane_row[l], y = target[i];
        REAL *g = grad ? grad + i * c : NULL;
        REAL *rule = offsets + i * k_nodes, *rule_w = log_weights + i * k_nodes;
        double factor_g = 1.0, v;
        rival_columns(idx, r, y);
        if (ok[l]) {
          v = log_v[l], mu[i] = lane_mu[l];
          memcpy(rule, lane_offsets + (size_t)l * k_nodes, (size_t)k_nodes * sizeof(REAL));
          memcpy(rule_w, lane_log_w + (size_t)l * k_nodes, (size_t)k_nodes * sizeof(REAL));
          if (g)
            for (int q = 0; q < r; ++q) g[idx[q]] = lane_grad[q * LANES + l];
        } else { /* a row outside the lanes' ground: one_row's own way */
          for (int q = 0; q < r; ++q) xr[q] = lane_xr[q * LANES + l];
          for (int pad = r; pad < rp; ++pad) xr[pad] = SENTINEL;
          v = one_row(xr, idx, r, n, lane_way[l] == WAY_Q, hermite_x, hermite_log_w, g, mu + i, rule, rule_w,
                      work, kept_idx, &k);
        }
        value[i] = (REAL)row_loss(v, lane_way[l], kind, &factor_g);
        if (g) finish_gradient(g, y, c, lane_clipped + (size_t)l * r, logits, lane_scale[l], factor_g, per_row);
      }
    }
  }
  free(pool);
  counts[2] = far;
  if (standardize && grad && !far) { /* (with far rows, the caller adds this once they are filled) */
    double a = 0.0;
    for (int64_t i = 0; i < b; ++i)
      if (target[i] != ignore_index)
        for (int64_t col = 0; col < c; ++col) a += grad[i * c + col] * (scores[i * c + col] - mean);
    const double coef = -a / d * per_std;
    for (int64_t i = 0; i < b; ++i)
      if (target[i] != ignore_index)
        for (int64_t col = 0; col < c; ++col) grad[i * c + col] += (REAL)(coef * (scores[i * c + col] - mean));
  }
  if (reduction) {
    double total = 0.0;
    for (int64_t i = 0; i < b; ++i) total += value[i];
    value[b] = (REAL)(reduction == 1 ? total / (double)valid : total);
  }
  return 0;
}

/* log Phi(u) and lam(u) at u = -sqrt2 x, elementwise (n values), as the rule evaluates them:
   for tests of the far tail against an independent log_ndtr.  Returns 0, or -3 (see above). */
int SUFFIX(lossbench_log_ndtr_and_mills)(const REAL *x, int64_t n, const double *constants, REAL *log_phi,
                                         REAL *lam) {
  Constants k;
  if (read_constants(constants, &k)) return -3;
  REAL clamped[WIDTH * 32];
  for (int64_t start = 0; start < n; start += WIDTH * 32) {
    int len = n - start < WIDTH * 32 ? (int)(n - start) : WIDTH * 32;
    phi_terms(x + start, 0, len, clamped, lam + start, log_phi + start, WITH_LOG, &k);
  }
  return 0;
}
