/* A scanner for the common case of a JSON-lines vote file, in C: arena/io.py's fast path.
 *
 * Reading a million votes is most of `qwenrl elo`'s time. This scanner reads a block of whole
 * lines, each one JSON object, and fills a column per wanted field: distinct strings coded in
 * first-seen order (with their offsets in the block, so Python decodes each distinct value
 * once), numbers as doubles, booleans as 0/1. Other fields are skipped, but their syntax is
 * checked as strictly as a JSON parser would.
 *
 * It accepts only what it can read exactly and gives up on the whole block at anything else:
 * a blank line, a line that is not one object, a repeated wanted key, an escape sequence in a
 * wanted string or in any key, a wanted value of an unexpected type, text that is not UTF-8,
 * nesting deeper than MAX_DEPTH. The caller then reads the block the slower ways, which say what
 * is wrong and where. So whatever it accepts, it reads as those would.
 *
 * Built as an optional extension (setup.py); called through ctypes on numpy buffers (which
 * releases the GIL, so two threads scan two halves of a file at once). The module exports
 * nothing to Python itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What a wanted field may hold; anything else gives up on the block. */
enum {
    KIND_TEXT = 0,   /* a string (coded) or null; absent counts as null: code -1 */
    KIND_NUMBER = 1, /* a number; null or absent: NaN */
    KIND_BOOL = 2,   /* true 1, false 0, null or absent -1 */
    KIND_NULL = 3,   /* only null or absent (a K-way vote's list, say, takes the slow path) */
};

#define MAX_DEPTH 64

typedef const unsigned char *ptr;

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether n bytes at a and b are equal: short strings, compared inline, eight bytes at a time. */
static inline int same_bytes(ptr a, ptr b, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, a + k, 8);
        memcpy(&y, b + k, 8);
        if (x != y) return 0;
    }
    for (; k < n; k++)
        if (a[k] != b[k]) return 0;
    return 1;
}

static inline ptr skip_ws(ptr p, ptr end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    return p;
}

/* Whether [s, e) is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
static int utf8_valid(ptr s, ptr e) {
    while (s < e) {
        unsigned c = *s;
        if (c < 0x80) { s++; continue; }
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) { n = 2; lo = 0xA0; }
        else if (c == 0xED) { n = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) { n = 3; lo = 0x90; }
        else if (c == 0xF4) { n = 3; hi = 0x8F; }
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else return 0;
        if (e - s <= n) return 0;
        if (s[1] < lo || s[1] > hi) return 0;
        for (int k = 2; k <= n; k++)
            if (s[k] < 0x80 || s[k] > 0xBF) return 0;
        s += n + 1;
    }
    return 1;
}

static inline int is_hex(unsigned c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes a string scan must stop at: the quote, the backslash, control characters and non-ASCII
 * bytes (checked as UTF-8). Filled when the module is imported. */
static unsigned char string_stop[256];

static void fill_string_stop(void) {
    for (int c = 0; c < 256; c++) string_stop[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

/* p points just after an opening quote. Returns the position just after the closing quote, or
 * NULL. *escaped says whether the string held an escape sequence. */
static ptr scan_string(ptr p, ptr end, int *escaped) {
    ptr start = p;
    int high = 0;
    *escaped = 0;
    for (;;) {
        /* eight bytes at a time while none of them needs a look (SWAR: a set high bit in a
         * lane marks a quote, a backslash, a control character or a non-ASCII byte; it may
         * also mark a lane after a true one, which only sends the word to the byte loop) */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            const uint64_t quote = w ^ (ONES * '"'), slash = w ^ (ONES * '\\');
            const uint64_t flags = (((quote - ONES) & ~quote) | ((slash - ONES) & ~slash) | ((w - ONES * 0x20) & ~w) | w) & HIGHS;
            if (flags) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                p += __builtin_ctzll(flags) >> 3; /* the lowest flag is always a true one */
#endif
                break;
            }
            p += 8;
        }
        while (p < end && !string_stop[*p]) p++;
        if (p >= end) return NULL;
        const unsigned c = *p;
        if (c == '"') {
            if (high && !utf8_valid(start, p)) return NULL;
            return p + 1;
        }
        if (c >= 0x80) {
            high = 1;
            p++;
        } else if (c == '\\') {
            *escaped = 1;
            if (p + 1 >= end) return NULL;
            const unsigned e = p[1];
            if (e == 'u') {
                if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5])) return NULL;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                p += 2;
            } else {
                return NULL;
            }
        } else {
            return NULL; /* a control character */
        }
    }
}

/* A JSON number starting at p: the position after it, or NULL. */
static ptr scan_number(ptr p, ptr end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
    else return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* The double nearest the JSON number in [p, e), as strtod gives it. Most numbers in a vote
 * file (Unix times with microseconds) have at most 19 digits and a short fraction: their digits
 * as an integer below 2^53 and a power of ten up to 1e22 are both exact doubles, so one
 * division, rounded once, is the correctly rounded value. Anything else goes to strtod. */
static double parse_number(ptr p, ptr e, char *text, size_t text_size) {
    static const double powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    ptr q = p;
    const int negative = *q == '-';
    q += negative;
    uint64_t digits = 0;
    int n_digits = 0, fraction = -1;
    for (; q < e && n_digits <= 19; q++) {
        if (*q == '.') {
            fraction = 0;
            continue;
        }
        if (*q < '0' || *q > '9') break;
        digits = digits * 10 + (uint64_t)(*q - '0');
        n_digits++;
        if (fraction >= 0) fraction++;
    }
    if (q == e && n_digits <= 19 && digits <= (1ULL << 53) && (fraction < 0 ? 0 : fraction) <= 22) {
        const double value = (double)digits / powers[fraction < 0 ? 0 : fraction];
        return negative ? -value : value;
    }
#if LDBL_MANT_DIG >= 64
    /* Up to 19 digits (Unix times with microseconds have 17): in a long double of 64 bits or more
     * the digits and the power of ten are exact and their quotient is rounded once. Rounding it
     * to double then gives the correctly rounded value, unless it lies exactly halfway between
     * two doubles (only then can the two roundings differ): those go to strtod. */
    static const long double long_powers[] = {
        1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
        1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    const int places = fraction < 0 ? 0 : fraction;
    if (q == e && n_digits <= 19 && places <= 27) {
        const long double quotient = (long double)digits / long_powers[places];
        const double value = (double)quotient;
        const long double off = quotient - (long double)value;
        const double neighbour = nextafter(value, off > 0 ? INFINITY : -INFINITY);
        if (off == 0 || 2 * (off > 0 ? off : -off) != ((long double)neighbour - (long double)value) * (off > 0 ? 1 : -1))
            return negative ? -value : value;
    }
#endif
    if ((size_t)(e - p) >= text_size) return NAN;
    memcpy(text, p, (size_t)(e - p));
    text[e - p] = 0;
    return strtod(text, NULL);
}

static ptr scan_literal(ptr p, ptr end, const char *word, size_t n) {
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* Any JSON value starting at p (no leading whitespace): the position after it, or NULL. */
static ptr skip_value(ptr p, ptr end, int depth) {
    int escaped;
    if (p >= end) return NULL;
    switch (*p) {
    case '"':
        return scan_string(p + 1, end, &escaped);
    case 't':
        return scan_literal(p, end, "true", 4);
    case 'f':
        return scan_literal(p, end, "false", 5);
    case 'n':
        return scan_literal(p, end, "null", 4);
    case '[':
    case '{': {
        const int object = *p == '{';
        const unsigned char close = object ? '}' : ']';
        if (depth >= MAX_DEPTH) return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == close) return p + 1;
        for (;;) {
            if (object) {
                if (p >= end || *p != '"') return NULL;
                if (!(p = scan_string(p + 1, end, &escaped))) return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p != ':') return NULL;
                p = skip_ws(p + 1, end);
            }
            if (!(p = skip_value(p, end, depth + 1))) return NULL;
            p = skip_ws(p, end);
            if (p >= end) return NULL;
            if (*p == close) return p + 1;
            if (*p != ',') return NULL;
            p = skip_ws(p + 1, end);
        }
    }
    default:
        return scan_number(p, end);
    }
}

/* Distinct strings of one field in one block: an open-addressing table of indices into the
 * (offset, length) list. Each distinct string is also copied into a small buffer of its own,
 * which stays in cache: comparing with its first occurrence in the block would not. */
typedef struct {
    uint32_t index; /* distinct index + 1; 0 = empty */
    uint32_t hash;  /* the hash's high half, compared before any byte */
} slot;

typedef struct {
    slot *slots;
    uint64_t mask;
    int64_t *spans; /* 2 per distinct string: offset in the block, length */
    int64_t count;
    unsigned char *copy; /* the distinct strings, one after another */
    int64_t *copy_at;    /* where each starts in copy */
    int64_t used, capacity;
} interner;

/* The code of string s[0:n] (at s - base in the block), -1 where memory ran out. */
static int64_t intern(interner *t, ptr base, ptr s, int64_t n) {
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ULL, word;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) { /* eight bytes per multiply */
        memcpy(&word, s + k, 8);
        h = (h ^ word) * 0xFF51AFD7ED558CCDULL;
    }
    for (word = 0; k < n; k++) word = (word << 8) | s[k];
    h = (h ^ word) * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 29;
    const uint32_t high = (uint32_t)(h >> 32);
    for (uint64_t at = h & t->mask;; at = (at + 1) & t->mask) {
        slot *here = &t->slots[at];
        if (here->index == 0) {
            if (t->used + n > t->capacity) {
                int64_t capacity = 2 * t->capacity + n;
                unsigned char *grown = realloc(t->copy, (size_t)capacity);
                if (!grown) return -1;
                t->copy = grown;
                t->capacity = capacity;
            }
            memcpy(t->copy + t->used, s, (size_t)n);
            t->copy_at[t->count] = t->used;
            t->used += n;
            t->spans[2 * t->count] = s - base;
            t->spans[2 * t->count + 1] = n;
            *here = (slot){(uint32_t)(++t->count), high};
            return t->count - 1;
        }
        const int64_t d = here->index - 1;
        if (here->hash == high && t->spans[2 * d + 1] == n && same_bytes(t->copy + t->copy_at[d], s, n)) return d;
    }
}

/* Scan n_lines lines of buf[0:len] (each ending in '\n', the last one may not).
 *
 * Wanted fields: n_keys names, concatenated in key_text with their lengths in key_len, and
 * their kinds. Output, field k's row r at [k * n_lines + r]: codes[] for text (-1 for null or
 * absent) and booleans (1, 0, -1), numbers[] for numbers; spans[] holds text field k's distinct
 * strings as (offset, length) pairs from [k * 2 * n_lines], n_distinct[k] of them.
 *
 * Returns 0, or -1 - (the row where it gave up).
 */
int64_t scan_lines(const char *buf, int64_t len, int64_t n_lines, const char *key_text, const int64_t *key_len,
                   const int8_t *kind, int64_t n_keys, int64_t *codes, double *numbers, int64_t *spans,
                   int64_t *n_distinct) {
    ptr const base = (ptr)buf, end = base + len;
    ptr key_at[64];
    int64_t result = 0;
    if (n_keys > 64) return -1;
    uint64_t size = 16;
    while (size < 2 * (uint64_t)n_lines) size <<= 1;
    interner tables[64];
    slot *slots = calloc((size_t)(size * (uint64_t)n_keys), sizeof(slot));
    int64_t *copy_at = malloc((size_t)(n_keys * (n_lines + 1)) * sizeof(int64_t));
    if (!slots || !copy_at) {
        free(slots);
        free(copy_at);
        return -1;
    }
    for (int64_t k = 0, offset = 0; k < n_keys; k++) {
        key_at[k] = (ptr)key_text + offset;
        offset += key_len[k];
        tables[k] = (interner){slots + k * size, size - 1, spans + k * 2 * n_lines, 0, NULL, copy_at + k * (n_lines + 1), 0, 0};
    }
    ptr p = base;
    char number_text[64];
    /* Lines written by one program name their fields in the same order and repeat many values:
     * the previous line's key at each position, and each field's previous string, are tried
     * first (one comparison) before the search and the hash table. */
    ptr last_name[64], last_value[64];
    int64_t last_name_len[64], last_k[64], last_value_len[64], last_code[64];
    for (int64_t k = 0; k < 64; k++) last_name_len[k] = last_value_len[k] = -1;
    for (int64_t row = 0; row < n_lines; row++) {
        uint64_t seen = 0;
        int64_t position = 0;
        if (p > end) goto fail; /* fewer lines than counted */
        ptr line_end = memchr(p, '\n', (size_t)(end - p));
        if (!line_end) line_end = end;
        for (int64_t k = 0; k < n_keys; k++) {
            if (kind[k] == KIND_NUMBER) numbers[k * n_lines + row] = NAN;
            else codes[k * n_lines + row] = -1;
        }
        if (p >= line_end || *p != '{') goto fail;
        p = skip_ws(p + 1, line_end);
        if (p < line_end && *p == '}') {
            p++;
        } else {
            for (;;) {
                int escaped;
                if (p >= line_end || *p != '"') goto fail;
                ptr name = p + 1;
                if (!(p = scan_string(name, line_end, &escaped)) || escaped) goto fail;
                const int64_t name_len = (p - 1) - name;
                p = skip_ws(p, line_end);
                if (p >= line_end || *p != ':') goto fail;
                p = skip_ws(p + 1, line_end);
                int64_t k = 0;
                if (position < 64 && last_name_len[position] == name_len && same_bytes(last_name[position], name, name_len)) {
                    k = last_k[position];
                } else {
                    while (k < n_keys && !(key_len[k] == name_len && same_bytes(key_at[k], name, name_len))) k++;
                    if (position < 64) {
                        last_name[position] = name;
                        last_name_len[position] = name_len;
                        last_k[position] = k;
                    }
                }
                position++;
                if (k == n_keys) {
                    if (!(p = skip_value(p, line_end, 1))) goto fail;
                } else {
                    if (seen & (1ULL << k)) goto fail; /* a repeated key: let the careful path decide */
                    seen |= 1ULL << k;
                    ptr after;
                    if (p >= line_end) goto fail;
                    if ((after = scan_literal(p, line_end, "null", 4))) {
                        /* the defaults stand: -1 or NaN */
                    } else if (kind[k] == KIND_TEXT && *p == '"') {
                        if (!(after = scan_string(p + 1, line_end, &escaped)) || escaped) goto fail;
                        const int64_t n = (after - 1) - (p + 1);
                        int64_t code;
                        if (last_value_len[k] == n && same_bytes(last_value[k], p + 1, n)) {
                            code = last_code[k];
                        } else {
                            if ((code = intern(&tables[k], base, p + 1, n)) < 0) goto fail;
                            last_value[k] = p + 1;
                            last_value_len[k] = n;
                            last_code[k] = code;
                        }
                        codes[k * n_lines + row] = code;
                    } else if (kind[k] == KIND_BOOL && (after = scan_literal(p, line_end, "true", 4))) {
                        codes[k * n_lines + row] = 1;
                    } else if (kind[k] == KIND_BOOL && (after = scan_literal(p, line_end, "false", 5))) {
                        codes[k * n_lines + row] = 0;
                    } else if (kind[k] == KIND_NUMBER && (after = scan_number(p, line_end))) {
                        const double value = parse_number(p, after, number_text, sizeof number_text);
                        if (!isfinite(value)) goto fail;
                        numbers[k * n_lines + row] = value;
                    } else {
                        goto fail;
                    }
                    p = after;
                }
                p = skip_ws(p, line_end);
                if (p < line_end && *p == ',') {
                    p = skip_ws(p + 1, line_end);
                    continue;
                }
                if (p < line_end && *p == '}') {
                    p++;
                    break;
                }
                goto fail;
            }
        }
        if (p != line_end) goto fail; /* anything after the object, even a space */
        p = line_end + 1;
        continue;
    fail:
        result = -1 - row;
        break;
    }
    if (result == 0 && p < end) result = -1 - n_lines; /* more lines than counted */
    for (int64_t k = 0; k < n_keys; k++) {
        n_distinct[k] = tables[k].count;
        free(tables[k].copy);
    }
    free(slots);
    free(copy_at);
    return result;
}

/* The number of lines in buf[0:len]: its newlines, plus one for an unfinished last line. */
int64_t count_lines(const char *buf, int64_t len) {
    int64_t n = 0;
    const char *p = buf, *end = buf + len, *nl;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p)))) {
        n++;
        p = nl + 1;
    }
    return n + (p < end);
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_scan",
                                    .m_doc = "The JSON-lines vote scanner, called through ctypes.", .m_size = -1};

PyMODINIT_FUNC PyInit__scan(void) {
    fill_string_stop(); /* once, on import, before any scan */
    return PyModule_Create(&module);
}
