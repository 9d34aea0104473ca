/* The loops of arena/ratings.py that numpy cannot vectorise well, in C.
 *
 * Online Elo and TrueSkill: each vote's update depends on the ratings left by the one before it;
 * in Python these passes take most of a million-vote leaderboard's time. The arithmetic is that
 * of _online_elo_arrays and _trueskill_arrays, step for step (the tests compare the two to 1e-9).
 *
 * The bootstrap's Poisson draws (PoissonSampler._table_draws): each uniform number walks its
 * cell's CDF from the guide table's start to its value; numpy does the walk in several passes
 * over every draw, this in one. Same uniform numbers, same integers.
 *
 * This file is built as an optional extension module (setup.py): where no C compiler is found
 * the numpy and Python code is used and gives the same results. The functions are called
 * through ctypes on numpy buffers; the module itself exports nothing to Python.
 *
 * Outcome codes: 0 = model b won, 1 = tie, 2 = model a won (B_WINS, TIE, A_WINS).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794

/* rating[] holds the initial ratings on entry and the final ones on return. */
void online_elo(const int64_t *a, const int64_t *b, const int8_t *outcome, int64_t n,
                double k, double alpha, double *rating) {
    const double half_k = k / 2.0;
    for (int64_t v = 0; v < n; v++) {
        const int64_t i = a[v], j = b[v];
        const double ri = rating[i], rj = rating[j];
        const double delta = half_k * (double)outcome[v] - k / (1.0 + exp(alpha * (rj - ri)));
        rating[i] = ri + delta;
        rating[j] = rj - delta;
    }
}

/* mu[] and var[] hold the priors on entry and the posteriors on return (variances, not sigmas). */
void trueskill(const int64_t *a, const int64_t *b, const int8_t *outcome, int64_t n,
               double beta, double tau, double margin, double *mu, double *var) {
    const double two_beta2 = 2.0 * beta * beta, tau2 = tau * tau;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = a[k], j = b[k];
        const int o = outcome[k];
        if (o == 0) { /* the winner goes first */
            const int64_t swap = i;
            i = j;
            j = swap;
        }
        const double vi = var[i] + tau2, vj = var[j] + tau2;
        const double c2 = two_beta2 + vi + vj;
        const double c = sqrt(c2);
        const double t = (mu[i] - mu[j]) / c;
        const double e = margin / c;
        double v, w;
        if (o != 1) {
            const double x = t - e;
            const double cdf = 0.5 * erfc(-x * INV_SQRT2);
            v = cdf > 0.0 ? INV_SQRT2PI * exp(-0.5 * x * x) / cdf : -x;
            w = v * (v + x);
        } else {
            const double at = t >= 0.0 ? t : -t;
            const double hi = e - at, lo = -e - at;
            const double denom = 0.5 * (erfc(-hi * INV_SQRT2) - erfc(-lo * INV_SQRT2));
            const double pdf_hi = INV_SQRT2PI * exp(-0.5 * hi * hi);
            const double pdf_lo = INV_SQRT2PI * exp(-0.5 * lo * lo);
            if (denom > 0.0) {
                v = (pdf_lo - pdf_hi) / denom;
                w = v * v + (hi * pdf_hi - lo * pdf_lo) / denom;
            } else {
                v = hi;
                w = 1.0;
            }
            if (t < 0.0) v = -v;
        }
        if (!(0.0 < w && w < 1.0)) w = w <= 0.0 ? 1e-12 : 1.0 - 1e-12;
        const double vc = v / c;
        mu[i] += vi * vc;
        mu[j] -= vj * vc;
        const double wc = w / c2;
        var[i] = vi * (1.0 - vi * wc);
        var[j] = vj * (1.0 - vj * wc);
    }
}

/* rows × cells uniform numbers u (row-major) to Poisson draws: cell c's draw starts at position
 * guide[guide_start[c] + floor(u * guide_size)] of the flat CDF, moves on while u >= cdf[pos] (the
 * CDF of each table ends in +inf), and is pos + offset[c]. */
void poisson_table_draws(const double *u, int64_t rows, int64_t cells, const int64_t *guide,
                         const int64_t *guide_start, const double *cdf, const int64_t *offset,
                         int64_t guide_size, int64_t *out) {
    for (int64_t r = 0; r < rows; r++) {
        const double *ur = u + r * cells;
        int64_t *o = out + r * cells;
        for (int64_t c = 0; c < cells; c++) {
            const double x = ur[c];
            int64_t pos = guide[guide_start[c] + (int64_t)(x * (double)guide_size)];
            while (x >= cdf[pos]) pos++;
            o[c] = pos + offset[c];
        }
    }
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_loops",
                                    .m_doc = "Rating loops, called through ctypes.", .m_size = -1};

PyMODINIT_FUNC PyInit__loops(void) { return PyModule_Create(&module); }
