/* The Ray fast path's inner loop in C: a chunk's Ray header lines to JSON records.
 *
 * Optional speed-up of shipper/ray/fast.py (which holds the pure-Python version and says what
 * it computes; SHIPPER_NO_EXTENSIONS=1 turns this module off). In sre the header regex alone
 * is most of a line's cost; here matching and writing a record is one pass over its bytes.
 *
 * rows(body, pos, end, cpp, seconds, consts, tail=False) -> (out, ends, bad, tail_sec)
 *   body: a chunk escaped by shipper/escape.py, lines ending in DEL (0x7f); [pos, end) holds
 *         whole lines, each with its DEL.
 *   cpp: the C++ header (`[ts,ms L pid tid] (comp) file.cc:12: msg`), else Python logging's
 *        (`ts,ms\tLEVEL (comp) file.py:12 -- msg`, the tab escaped as the two bytes `\t`).
 *   seconds: `YYYY-mm-dd HH:MM:SS` -> the epoch second as JSON text, or None (the per-line
 *            path decides); looked up once per change of second.
 *   consts: the record's constant pieces, around date seconds, milliseconds, line, level,
 *           the format's fields (pid, tid, source / source) and message.
 *   out: the records of the rows the regexes in fast.py take, in order; ends: each row's
 *   end offset in out (native long long, memoryview format "q"); bad: the rows not taken (nothing in out).
 *   tail: the `ray` joiner is on. Also look at the chunk's last line, [end, the closing
 *   quote): tail_sec is its second's value in `seconds` when it starts with a header
 *   (fast.py's `head`), else None. And lines that cannot start a record (see `continues`)
 *   after a taken header join its record, as the joiner would join them, where the line after
 *   them is a taken header too (or the last line, left for the next read): one record, every
 *   row of it ending where it ends. fast.py's Python version sends such lines per line.
 * free_rows(complete, pos, head, tail, forwarded, most, joins): user output (see below).
 * The grammar is exactly fast.py's _CPP_HEAD / _PY_HEAD; tests/ray/test_fast.py checks the two
 * agree line for line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define DEL 0x7f

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* \s of a bytes pattern */
static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}`: 23 bytes */
static int timestamp(const unsigned char *p, const unsigned char *e) {
    static const char shape[] = "dddd-dd-dd dd:dd:dd,ddd";
    if (e - p < 23) return 0;
    for (int i = 0; i < 23; i++) {
        if (shape[i] == 'd' ? !is_digit(p[i]) : p[i] != (unsigned char)shape[i]) return 0;
    }
    return 1;
}

/* `0|[1-9]\d{0,17}` followed by `stop`: the end of the number, or NULL */
static const unsigned char *number(const unsigned char *p, const unsigned char *e, char stop) {
    const unsigned char *q = p;
    while (q < e && is_digit(*q)) q++;
    Py_ssize_t n = q - p;
    if (n == 0 || n > 18 || (n > 1 && *p == '0')) return NULL;
    if (q >= e || *q != (unsigned char)stop) return NULL;
    return q;
}

/* `(?:\([^)\s\\\x7f]+\) )?`: past the component, or p when there is none */
static const unsigned char *component(const unsigned char *p, const unsigned char *e) {
    if (p >= e || *p != '(') return p;
    const unsigned char *q = p + 1;
    while (q < e && *q != ')' && !is_space(*q) && *q != '\\' && *q != DEL) q++;
    if (q == p + 1 || e - q < 2 || q[0] != ')' || q[1] != ' ') return p;
    return q + 2;
}

typedef struct {
    const unsigned char *at[8]; /* ts, ms, level, then the fields */
    Py_ssize_t len[8];
    const unsigned char *msg;
} Row;

/* C++: `\[TS ([TDIWEC]) (PID) (TID)\] COMP? ([^\s:\\\x7f]+:\d+): ?` */
static int cpp_row(const unsigned char *p, const unsigned char *e, Row *r) {
    if (e - p < 1 || *p != '[' || !timestamp(p + 1, e)) return 0;
    const unsigned char *q = p + 24;
    if (e - q < 4 || q[0] != ' ' || !strchr("TDIWEC", q[1]) || q[1] == 0 || q[2] != ' ') return 0;
    r->at[0] = p + 1, r->len[0] = 19;
    r->at[1] = p + 21, r->len[1] = 3;
    r->at[2] = q + 1, r->len[2] = 1;
    q += 3;
    const unsigned char *pid_end = number(q, e, ' ');
    if (pid_end == NULL) return 0;
    r->at[3] = q, r->len[3] = pid_end - q;
    q = pid_end + 1;
    const unsigned char *tid_end = number(q, e, ']');
    if (tid_end == NULL) return 0;
    r->at[4] = q, r->len[4] = tid_end - q;
    q = tid_end + 1;
    if (q >= e || *q != ' ') return 0;
    q = component(q + 1, e);
    const unsigned char *s = q;
    while (q < e && !is_space(*q) && *q != ':' && *q != '\\' && *q != DEL) q++;
    if (q == s || q >= e || *q != ':') return 0;
    q++;
    const unsigned char *d = q;
    while (q < e && is_digit(*q)) q++;
    if (q == d || q >= e || *q != ':') return 0;
    r->at[5] = s, r->len[5] = q - s;
    q++;
    if (q < e && *q == ' ') q++;
    r->msg = q;
    return 1;
}

static const char *const PY_LEVELS[] = {"DEBUG", "INFO", "WARNING", "ERROR",
                                        "CRITICAL", "WARN", "FATAL", "TRACE"};

/* ` --(?: |(?=\x7f))` at p: past it, or NULL */
static const unsigned char *dashes(const unsigned char *p, const unsigned char *e) {
    if (e - p < 3 || memcmp(p, " --", 3) != 0) return NULL;
    p += 3;
    if (p < e && *p == ' ') return p + 1;
    return p == e && *e == DEL ? p : NULL; /* a line's end; a chunk's last line has none */
}

/* Python: `TS\\t(LEVEL) COMP? ([^\s\\\x7f]+:\d+|\(unknown file\):\d+) --(?: |(?=\x7f))` */
static int py_row(const unsigned char *p, const unsigned char *e, Row *r) {
    if (!timestamp(p, e)) return 0;
    const unsigned char *q = p + 23;
    if (e - q < 2 || q[0] != '\\' || q[1] != 't') return 0;
    q += 2;
    r->at[0] = p, r->len[0] = 19;
    r->at[1] = p + 20, r->len[1] = 3;
    int found = 0;
    for (size_t i = 0; i < sizeof(PY_LEVELS) / sizeof(PY_LEVELS[0]); i++) {
        size_t n = strlen(PY_LEVELS[i]);
        if ((size_t)(e - q) > n && memcmp(q, PY_LEVELS[i], n) == 0 && q[n] == ' ') {
            r->at[2] = q, r->len[2] = (Py_ssize_t)n;
            q += n + 1;
            found = 1;
            break;
        }
    }
    if (!found) return 0;
    q = component(q, e);
    /* A run of source characters ending in `:\d+` (some byte before the colon), then ` --`. */
    const unsigned char *s = q, *t = q;
    while (t < e && !is_space(*t) && *t != '\\' && *t != DEL) t++;
    const unsigned char *d = t;
    while (d > s && is_digit(d[-1])) d--;
    const unsigned char *after = NULL;
    if (d < t && d - s >= 2 && d[-1] == ':') after = dashes(t, e);
    if (after == NULL) {
        static const char unknown[] = "(unknown file):";
        size_t n = sizeof(unknown) - 1;
        if ((size_t)(e - s) < n || memcmp(s, unknown, n) != 0) return 0;
        t = s + n;
        d = t;
        while (t < e && is_digit(*t)) t++;
        if (t == d) return 0;
        after = dashes(t, e);
        if (after == NULL) return 0;
    }
    r->at[3] = s, r->len[3] = t - s;
    r->msg = after;
    return 1;
}

static const char *level_name(const unsigned char *p, Py_ssize_t n, Py_ssize_t *out_len) {
    const char *name;
    if (n == 1) {
        switch (*p) {
        case 'T': case 'D': name = "DEBUG"; break;
        case 'I': name = "INFO"; break;
        case 'W': name = "WARNING"; break;
        case 'E': name = "ERROR"; break;
        default: name = "FATAL"; break; /* C */
        }
    } else if (n == 8 || (n == 5 && memcmp(p, "FATAL", 5) == 0)) {
        name = "FATAL"; /* CRITICAL */
    } else if (n == 4 && memcmp(p, "WARN", 4) == 0) {
        name = "WARNING";
    } else if (n == 5 && memcmp(p, "TRACE", 5) == 0) {
        name = "DEBUG";
    } else {
        *out_len = n; /* DEBUG, INFO, WARNING, ERROR */
        return (const char *)p;
    }
    *out_len = (Py_ssize_t)strlen(name);
    return name;
}

/* Output written straight into a bytes object (handed over as it is: no copy at the end). */
typedef struct {
    PyObject *obj;
    char *buf;
    Py_ssize_t len, cap;
} Buf;

static int reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    if (b->obj == NULL) {
        b->obj = PyBytes_FromStringAndSize(NULL, cap);
        if (b->obj == NULL) return -1;
    } else if (_PyBytes_Resize(&b->obj, cap) < 0) {
        return -1; /* (it has freed the object and set it to NULL) */
    }
    b->buf = PyBytes_AS_STRING(b->obj);
    b->cap = cap;
    return 0;
}

/* The bytes written (a new reference), the buffer emptied; NULL on error. */
static PyObject *take(Buf *b) {
    PyObject *o = b->obj;
    b->obj = NULL;
    b->buf = NULL;
    b->cap = 0;
    if (o == NULL) return PyBytes_FromStringAndSize("", 0);
    if (_PyBytes_Resize(&o, b->len) < 0) return NULL;
    return o;
}

/* How many times byte c occurs in [p, e): a chunk's line count, to size its output once
   (growing by doubling copied the whole output again, a few times per chunk). */
static Py_ssize_t count_byte(const unsigned char *p, const unsigned char *e, int c) {
    Py_ssize_t n = 0;
    while (p < e && (p = memchr(p, c, (size_t)(e - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

static void put(Buf *b, const void *p, Py_ssize_t n) {
    memcpy(b->buf + b->len, p, (size_t)n);
    b->len += n;
}

/* Can this line (escaped, [p, e)) continue a record under the ray joiner? Only one that no
   header format of the per-line parser (shipper/ray/lines.py) could start: not empty, not
   `[`, a digit, a level's or glog's first letter, `{`, `(`, nor an escape. */
static int continues(const unsigned char *p, const unsigned char *e) {
    if (p >= e) return 0;
    unsigned char c = *p;
    return !(is_digit(c) || strchr("[DIWECF{(\\", c) != NULL || c == DEL);
}

/* [p, e) with each DEL (a line's end) written as an escaped newline; room reserved. */
static void put_lines(Buf *b, const unsigned char *p, const unsigned char *e) {
    for (;;) {
        const unsigned char *d = memchr(p, DEL, (size_t)(e - p));
        if (d == NULL) {
            put(b, p, e - p);
            return;
        }
        put(b, p, d - p);
        put(b, "\\n", 2);
        p = d + 1;
    }
}

/* A joined record [first, last] must go per line after all (the line after it may continue
   it): out back to `at`, its rows' ends too, and its continuation lines to `bad` (the rows
   not taken, as fast.py's regex leaves them; the header goes per line as the row before). */
static int ungroup(Buf *out, Buf *ends, PyObject *bad, Py_ssize_t first, Py_ssize_t last,
                   Py_ssize_t at) {
    out->len = at;
    long long *row_ends = (long long *)ends->buf;
    for (Py_ssize_t i = first; i <= last; i++) {
        row_ends[i] = at;
        if (i == first) continue;
        PyObject *n = PyLong_FromSsize_t(i);
        if (n == NULL) return -1;
        int rc = PyList_Append(bad, n);
        Py_DECREF(n);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *rows(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer body;
    Py_ssize_t pos, end;
    int cpp;
    PyObject *seconds, *consts;
    int tail = 0;
    if (!PyArg_ParseTuple(args, "y*nnpOO!|p", &body, &pos, &end, &cpp, &seconds, &PyTuple_Type,
                          &consts, &tail))
        return NULL;
    PyObject *result = NULL, *bad = NULL, *last_sec = NULL, *tail_sec = NULL;
    Buf out = {0}, ends = {0};
    int nfields = cpp ? 3 : 1;
    Py_ssize_t nconsts = nfields + 6;
    const char *cp[12];
    Py_ssize_t cl[12], fixed = 0;
    if (PyTuple_GET_SIZE(consts) != nconsts) {
        PyErr_SetString(PyExc_ValueError, "rows: wrong number of constant pieces");
        goto done;
    }
    for (Py_ssize_t i = 0; i < nconsts; i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (!PyBytes_Check(c)) {
            PyErr_SetString(PyExc_TypeError, "rows: constant pieces must be bytes");
            goto done;
        }
        cp[i] = PyBytes_AS_STRING(c);
        cl[i] = PyBytes_GET_SIZE(c);
        fixed += cl[i];
    }
    if (pos < 0 || end > body.len - (tail ? 1 : 0) || pos > end) {
        PyErr_SetString(PyExc_ValueError, "rows: range out of the body");
        goto done;
    }
    bad = PyList_New(0);
    if (bad == NULL) goto done;
    const unsigned char *base = body.buf;
    const unsigned char *p = base + pos, *stop = base + end;
    unsigned char last_ts[19];
    const char *sec = NULL;
    Py_ssize_t sec_len = 0, row = 0;
    /* The last record that joined lines (`tail`: the ray joiner): its first and last row and
       where it starts in out. It stays fast only if a taken header follows it (see below). */
    Py_ssize_t g_first = -1, g_last = -1, g_at = 0;
    /* Each row is its constants, its second and fields, and its line about twice over (log
       and message): with room to spare, so that the row's own reserve below rarely grows. */
    if (reserve(&out, (count_byte(p, stop, DEL) + 1) * (fixed + 64) + 3 * (stop - p)) < 0)
        goto done;
    while (p < stop) {
        const unsigned char *e = memchr(p, DEL, (size_t)(stop - p));
        if (e == NULL) e = stop; /* not a whole line: taken by no regex */
        Row r;
        int ok = e < stop && (cpp ? cpp_row(p, e, &r) : py_row(p, e, &r));
        if (ok && (last_sec == NULL || memcmp(last_ts, r.at[0], 19) != 0)) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)r.at[0], 19);
            if (key == NULL) goto done;
            PyObject *val = PyObject_GetItem(seconds, key);
            Py_DECREF(key);
            if (val == NULL) goto done;
            if (val != Py_None && !PyBytes_Check(val)) {
                Py_DECREF(val);
                PyErr_SetString(PyExc_TypeError, "rows: seconds must map to bytes or None");
                goto done;
            }
            Py_XSETREF(last_sec, val);
            memcpy(last_ts, r.at[0], 19);
            sec = val == Py_None ? NULL : PyBytes_AS_STRING(val);
            sec_len = val == Py_None ? 0 : PyBytes_GET_SIZE(val);
        }
        if (!(ok && sec != NULL) && g_first >= 0 && g_last == row - 1 &&
            ungroup(&out, &ends, bad, g_first, g_last, g_at) < 0)
            goto done;
        if (ok && sec != NULL) {
            /* With the ray joiner, the lines after it that no parser takes for a header
               continue its record (log and message joined by newlines). */
            const unsigned char *last = e; /* the record's last line's DEL */
            Py_ssize_t more = 0;
            while (tail && last + 1 < stop) {
                const unsigned char *q = last + 1;
                const unsigned char *qe = memchr(q, DEL, (size_t)(stop - q));
                if (qe == NULL || !continues(q, qe)) break;
                last = qe;
                more++;
            }
            Py_ssize_t level_len, line_len = last - p, msg_len = last - r.msg;
            const char *level = level_name(r.at[2], r.len[2], &level_len);
            Py_ssize_t need = fixed + sec_len + 3 + 2 * line_len + level_len + 2 * msg_len;
            for (int f = 0; f < nfields; f++) need += r.len[3 + f];
            if (reserve(&out, need) < 0) goto done;
            Py_ssize_t at = out.len;
            put(&out, cp[0], cl[0]);
            put(&out, sec, sec_len);
            put(&out, cp[1], cl[1]);
            put(&out, r.at[1], 3);
            put(&out, cp[2], cl[2]);
            put_lines(&out, p, last);
            put(&out, cp[3], cl[3]);
            put(&out, level, level_len);
            for (int f = 0; f < nfields; f++) {
                put(&out, cp[4 + f], cl[4 + f]);
                put(&out, r.at[3 + f], r.len[3 + f]);
            }
            put(&out, cp[4 + nfields], cl[4 + nfields]);
            put_lines(&out, r.msg, last);
            put(&out, cp[5 + nfields], cl[5 + nfields]);
            if (more) {
                /* every row of the record ends where it ends: no run is cut inside it */
                if (reserve(&ends, (more + 1) * (Py_ssize_t)sizeof(long long)) < 0) goto done;
                for (Py_ssize_t k = 0; k < more; k++) {
                    long long row_end = at;
                    put(&ends, &row_end, sizeof row_end);
                }
                g_first = row, g_last = row + more, g_at = at;
                row += more;
            }
            e = last;
        } else {
            PyObject *i = PyLong_FromSsize_t(row);
            if (i == NULL) goto done;
            int rc = PyList_Append(bad, i);
            Py_DECREF(i);
            if (rc < 0) goto done;
        }
        long long row_end = out.len;
        if (reserve(&ends, sizeof row_end) < 0) goto done;
        put(&ends, &row_end, sizeof row_end);
        row++;
        p = e + 1;
    }
    /* The chunk's last line, [end, the closing quote): does it start with a header, and
       what is its second (fast.py's `head` regex and seconds lookup)? */
    tail_sec = Py_None;
    Py_INCREF(tail_sec);
    if (tail) {
        Row r;
        const unsigned char *e = base + body.len - 1;
        if (cpp ? cpp_row(stop, e, &r) : py_row(stop, e, &r)) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)r.at[0], 19);
            if (key == NULL) goto done;
            PyObject *val = PyObject_GetItem(seconds, key);
            Py_DECREF(key);
            if (val == NULL) goto done;
            Py_SETREF(tail_sec, val);
        }
        /* Not left for the next read: the last line may continue the joined record */
        if (tail_sec == Py_None && g_first >= 0 && g_last == row - 1 &&
            ungroup(&out, &ends, bad, g_first, g_last, g_at) < 0)
            goto done;
    }
    PyObject *o = take(&out);
    PyObject *n = o == NULL ? NULL : take(&ends);
    if (n != NULL) result = PyTuple_Pack(4, o, n, bad, tail_sec);
    Py_XDECREF(o);
    Py_XDECREF(n);
done:
    Py_XDECREF(out.obj);
    Py_XDECREF(ends.obj);
    Py_XDECREF(last_sec);
    Py_XDECREF(tail_sec);
    Py_XDECREF(bad);
    PyBuffer_Release(&body);
    return result;
}

/* Does the line at p (up to e) start with `word` and then ':' or ' '? */
static int starts_level(const unsigned char *p, const unsigned char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) > n && memcmp(p, word, n) == 0 && (p[n] == ':' || p[n] == ' ');
}

/* Is the line at p (up to e) special in user output: fast.py's _SPECIAL, a Ray header, a
   worker marker line, the start of a traceback, a level name (Python logging, Serve) or, where
   a driver's output is (`forwarded`), a `(name pid=N)` prefix? */
static int special(const unsigned char *p, const unsigned char *e, int forwarded) {
    if (p >= e) return 0;
    unsigned char c = *p;
    if (c == '[' || c == '{' || c == ':' || is_digit(c)) return 1;
    if ((c == '(' || c == 0x1b) && forwarded) return 1;
    if ((c == 'I' || c == 'W' || c == 'E' || c == 'F') && e - p >= 2 && is_digit(p[1])) return 1;
    switch (c) {
    case 'D': return starts_level(p, e, "DEBUG");
    case 'I': return starts_level(p, e, "INFO");
    case 'W': return starts_level(p, e, "WARNING");
    case 'E': return starts_level(p, e, "ERROR");
    case 'C': return starts_level(p, e, "CRITICAL");
    case 'T': return e - p >= 9 && memcmp(p, "Traceback", 9) == 0;
    default: return 0;
    }
}

/* logging.basicConfig()'s `LEVEL:name:message` (fast.py's _BASIC; the logger name in
   printable ASCII here, anything else goes per line): the level's record value, and where
   the name and the message start; NULL when the line is not one. */
static const char *basic(const unsigned char *p, const unsigned char *e,
                         const unsigned char **name, const unsigned char **msg) {
    static const char *const names[][2] = {
        {"DEBUG", "DEBUG"}, {"INFO", "INFO"}, {"WARNING", "WARNING"},
        {"ERROR", "ERROR"}, {"CRITICAL", "FATAL"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i][0]);
        if ((size_t)(e - p) <= n || memcmp(p, names[i][0], n) != 0 || p[n] != ':') continue;
        const unsigned char *q = p + n + 1, *r = q;
        while (r < e && *r > ' ' && *r < 0x7f && *r != ':' && *r != '"' && *r != '\\') r++;
        if (r == q || r >= e || *r != ':') return NULL;
        *name = q;
        *msg = r + 1;
        return names[i][1];
    }
    return NULL;
}

static const char HEX[] = "0123456789abcdef";

/* The bytes JSON escapes: control characters, the quote, the backslash. */
static const unsigned char ESCAPE[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* Append [q, e) as a JSON string body, escaped as orjson escapes it; room reserved. */
static void put_escaped(Buf *out, const unsigned char *q, const unsigned char *e) {
    char *w = out->buf + out->len;
    while (q < e) {
        const unsigned char *r = q;
        while (r < e && !ESCAPE[*r]) r++;
        memcpy(w, q, (size_t)(r - q));
        w += r - q;
        if (r == e) break;
        unsigned char c = *r;
        *w++ = '\\';
        if (c == '"' || c == '\\') {
            *w++ = (char)c;
        } else if (c == '\b') {
            *w++ = 'b';
        } else if (c == '\t') {
            *w++ = 't';
        } else if (c == '\n') { /* inside a joined traceback */
            *w++ = 'n';
        } else if (c == '\f') {
            *w++ = 'f';
        } else {
            memcpy(w, "u00", 3);
            w[3] = HEX[c >> 4];
            w[4] = HEX[c & 15];
            w += 5;
        }
        q = r + 1;
    }
    out->len = w - out->buf;
}

/* `\s` of a str pattern and str.isspace(), over ASCII */
static int py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* Is [p, e) all spaces (str.isspace() of it, or `\s*` up to the end)? 1 yes, 0 no, -1
   undecided (non-ASCII bytes, maybe Unicode spaces: the per-line path decides). */
static int all_space(const unsigned char *p, const unsigned char *e) {
    int other = 0;
    for (; p < e; p++) {
        if (*p >= 0x80)
            other = 1;
        else if (!py_space(*p))
            return 0;
    }
    return other ? -1 : 1;
}

static int isalnum_ascii(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* multiline.py's _EXC_LINE at the start of [p, e): 1 match, 0 not, -1 undecided. */
static int exc_line(const unsigned char *p, const unsigned char *e) {
    const unsigned char *q = p;
    for (;;) { /* `(?:[^\s.():]+\.)*[^\s.():]+` */
        const unsigned char *s = q;
        while (q < e && *q < 0x80 && !py_space(*q) && !strchr(".():", *q)) q++;
        if (q < e && *q >= 0x80) return -1;
        if (q == s) return 0;
        if (q < e && *q == '.') {
            q++;
            continue;
        }
        break;
    }
    if (q < e && *q == ':') return 1;
    if (q < e && *q == '(') { /* `\([\w.]*\):` */
        q++;
        while (q < e && *q < 0x80 && (isalnum_ascii(*q) || *q == '_' || *q == '.')) q++;
        if (q < e && *q >= 0x80) return -1;
        return e - q >= 2 && q[0] == ')' && q[1] == ':';
    }
    return all_space(q, e); /* `\s*$` */
}

/* A Python traceback starting at the line [p, e), whole within the text (up to `end`), as
   the ray joiner takes it in user output (multiline.py `_python`): indented lines go on, the
   exception line closes it, any other line ends it before itself. The end of its last line,
   or NULL when the text ends first or a line is one the per-line path must judge (a line
   that may carry a header, bytes that may be Unicode spaces). */
static const unsigned char *traceback(const unsigned char *p, const unsigned char *e,
                                      const unsigned char *end) {
    static const char start[] = "Traceback (most recent call last):";
    Py_ssize_t n = (Py_ssize_t)sizeof start - 1;
    if (e - p < n || memcmp(p, start, (size_t)n) != 0) return NULL;
    if (p + n < e && all_space(p + n, e) != 1) return NULL;
    const unsigned char *last = e; /* the end of the traceback's last line */
    while (last < end) {
        const unsigned char *q = last + 1;
        const unsigned char *qe = memchr(q, '\n', (size_t)(end - q));
        if (qe == NULL) qe = end;
        if (special(q, qe, 0)) return NULL;
        if (q < qe && (*q == ' ' || *q == '\t')) {
            int blank = all_space(q, qe);
            if (blank < 0) return NULL;
            if (blank) return last;
            last = qe;
            continue;
        }
        int x = exc_line(q, qe);
        if (x < 0) return NULL;
        return x ? qe : last;
    }
    return NULL; /* still open: the next read may go on with it */
}

/* free_rows(complete, pos, head, tail, forwarded, most, joins) -> (out, count, stop)
 *   complete: lines joined by newlines, no CR, valid UTF-8 (escape.needs_per_line said so).
 *   From the line that starts at `pos`, each line up to the first special one becomes
 *   head + the line as a JSON string body + tail, escaped as orjson escapes (`"`, `\`, and
 *   control characters: \b \t \f, else \u00xx); `stop` is where the special line starts
 *   (or the line after the `most`-th taken, when most >= 1), or -1 when every line to the
 *   end was taken. free.py's free_rows is the Python version. With `joins` (the ray joiner)
 *   and not `forwarded`, a Python traceback whole in the text is one record too (its lines
 *   joined); the Python version leaves it to the per-line path (the same records).
 */
static PyObject *free_rows(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer text, head, tail;
    Py_ssize_t pos;
    int forwarded = 0;
    Py_ssize_t most = -1;
    int joins = 0;
    if (!PyArg_ParseTuple(args, "y*ny*y*|pnp", &text, &pos, &head, &tail, &forwarded, &most,
                          &joins))
        return NULL;
    PyObject *result = NULL;
    Buf out = {0};
    if (pos < 0 || pos > text.len) {
        PyErr_SetString(PyExc_ValueError, "free_rows: position out of the text");
        goto done;
    }
    const unsigned char *p = (const unsigned char *)text.buf + pos;
    const unsigned char *end = (const unsigned char *)text.buf + text.len;
    Py_ssize_t count = 0, stop = -1;
    /* Room for the usual case at once (few escapes): head and tail per line, the text with
       room to spare; growing by doubling copied the whole output again. */
    Py_ssize_t lines = count_byte(p, end, '\n') + 1;
    if (reserve(&out, lines * (head.len + tail.len + 8) + 2 * (end - p) + 64) < 0) goto done;
    for (;;) {
        const unsigned char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL) e = end;
        const char *lvl = NULL;
        const unsigned char *name = NULL, *msg = NULL, *tb = NULL;
        /* A basicConfig line is a record of its own when the next line, here already, is not
           its logger.exception traceback (multiline.py holds it for one line to see). */
        if (special(p, e, forwarded) &&
            (forwarded || !joins || *p != 'T' || (tb = traceback(p, e, end)) == NULL) &&
            (forwarded || e == end || (lvl = basic(p, e, &name, &msg)) == NULL ||
             ((size_t)(end - e - 1) >= 9 && memcmp(e + 1, "Traceback", 9) == 0))) {
            stop = (Py_ssize_t)(p - (const unsigned char *)text.buf);
            break;
        }
        if (tb != NULL) e = tb; /* the record is the traceback's lines */
        /* at most 6 bytes per input byte (\u00xx), twice over for a basicConfig line */
        if (reserve(&out, head.len + 12 * (e - p) + tail.len + 64) < 0) goto done;
        put(&out, head.buf, head.len);
        put_escaped(&out, p, e);
        if (lvl != NULL) {
            put(&out, "\",\"level\":\"", 11);
            put(&out, lvl, (Py_ssize_t)strlen(lvl));
            put(&out, "\",\"logger\":\"", 12);
            put(&out, name, msg - 1 - name); /* printable ASCII, no quote or backslash */
            put(&out, "\",\"message\":\"", 13);
            put_escaped(&out, msg, e);
        }
        put(&out, tail.buf, tail.len);
        count++;
        if (e == end) break;
        p = e + 1;
        if (count == most) {
            stop = (Py_ssize_t)(p - (const unsigned char *)text.buf);
            break;
        }
    }
    PyObject *o = take(&out);
    if (o != NULL) {
        result = Py_BuildValue("(Nnn)", o, count, stop);
    }
done:
    Py_XDECREF(out.obj);
    PyBuffer_Release(&text);
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    return result;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, "A chunk's Ray header lines as JSON records (see fast.py)."},
    {"free_rows", free_rows, METH_VARARGS,
     "A run of plain lines of user output as JSON records (see fast.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shipper.ray._fastray", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastray(void) { return PyModule_Create(&module); }
