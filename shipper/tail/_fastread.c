/* The tail input's read pass in one call: fstat + pread of every open file.

   With thousands of followed files, a pass's Python steps per file (a method call, an
   os.stat_result, a tuple) cost more than the two system calls. Here the calls for all files
   run in two GIL-free loops (every fstat, then every pread into bytes objects not yet shared),
   and the results come back as (data, size, nlink, errno) per file: what
   shipper/tail/reader.py's pure-Python `read_all` returns, which stays the fallback and the
   reference (tests/tail/test_read_pass.py runs both). Optional at install, like
   shipper/ray/_fastray.c.
*/
#define _GNU_SOURCE /* preadv2 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

typedef struct {
    int fd;
    long long pos;    /* where to read from */
    long long size;   /* st_size */
    long long nlink;  /* st_nlink */
    Py_ssize_t want;  /* bytes to read */
    Py_ssize_t got;
    int err;          /* errno of a failed fstat or pread, else 0 */
    PyObject *data;   /* bytes of `want` bytes while reading */
} Item;

static void
free_items(Item *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i].data);
    PyMem_Free(items);
}

/* read_many(fds, positions, limit, nowait=False) -> [(data, size, nlink, errno), ...]
   nowait: only what the page cache holds (preadv2 RWF_NOWAIT): errno EAGAIN for a file
   whose next bytes are not there (EOPNOTSUPP where the filesystem cannot say). */
static PyObject *
read_many(PyObject *self, PyObject *args)
{
    PyObject *fds_arg, *pos_arg;
    Py_ssize_t limit;
    int nowait = 0;
    if (!PyArg_ParseTuple(args, "OOn|p:read_many", &fds_arg, &pos_arg, &limit, &nowait))
        return NULL;
    PyObject *fds = PySequence_Fast(fds_arg, "fds must be a sequence");
    if (fds == NULL)
        return NULL;
    PyObject *positions = PySequence_Fast(pos_arg, "positions must be a sequence");
    if (positions == NULL) {
        Py_DECREF(fds);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fds);
    if (PySequence_Fast_GET_SIZE(positions) != n) {
        PyErr_SetString(PyExc_ValueError, "fds and positions differ in length");
        Py_DECREF(fds);
        Py_DECREF(positions);
        return NULL;
    }
    Item *items = PyMem_Calloc(n ? n : 1, sizeof(Item));
    if (items == NULL) {
        Py_DECREF(fds);
        Py_DECREF(positions);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(fds, i));
        long long pos = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(positions, i));
        if (PyErr_Occurred()) {
            Py_DECREF(fds);
            Py_DECREF(positions);
            free_items(items, n);
            return NULL;
        }
        if (pos < 0) {
            PyErr_SetString(PyExc_ValueError, "negative position");
            Py_DECREF(fds);
            Py_DECREF(positions);
            free_items(items, n);
            return NULL;
        }
        items[i].fd = (int)fd;
        items[i].pos = pos;
    }
    Py_DECREF(fds);
    Py_DECREF(positions);

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct stat st;
        if (fstat(items[i].fd, &st) != 0) {
            items[i].err = errno;
            continue;
        }
        items[i].size = (long long)st.st_size;
        items[i].nlink = (long long)st.st_nlink;
        if (limit > 0 && items[i].size > items[i].pos) {
            long long left = items[i].size - items[i].pos;
            items[i].want = left < (long long)limit ? (Py_ssize_t)left : limit;
        }
    }
    Py_END_ALLOW_THREADS

    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i].want > 0) {
            items[i].data = PyBytes_FromStringAndSize(NULL, items[i].want);
            if (items[i].data == NULL) {
                free_items(items, n);
                return NULL;
            }
        }
    }

    /* The bytes objects are ours alone until returned: filling them needs no GIL. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i].want <= 0)
            continue;
        ssize_t got;
        struct iovec iov = {PyBytes_AS_STRING(items[i].data), (size_t)items[i].want};
        do {
            if (nowait)
                got = preadv2(items[i].fd, &iov, 1, (off_t)items[i].pos, RWF_NOWAIT);
            else
                got = pread(items[i].fd, iov.iov_base, iov.iov_len, (off_t)items[i].pos);
        } while (got < 0 && errno == EINTR);
        if (got < 0)
            items[i].err = errno;
        else
            items[i].got = (Py_ssize_t)got;
    }
    Py_END_ALLOW_THREADS

    PyObject *out = PyList_New(n);
    if (out == NULL) {
        free_items(items, n);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Item *it = &items[i];
        PyObject *row;
        if (it->err != 0) {  /* as the pure-Python read_all: no data, size 0, nlink 1 */
            row = Py_BuildValue("(y#iii)", "", (Py_ssize_t)0, 0, 1, it->err);
        } else {
            PyObject *data;
            if (it->data == NULL || it->got == 0) {
                data = PyBytes_FromStringAndSize(NULL, 0);
            } else {
                if (it->got < it->want && _PyBytes_Resize(&it->data, it->got) < 0) {
                    it->data = NULL;  /* _PyBytes_Resize freed it */
                    Py_DECREF(out);
                    free_items(items, n);
                    return NULL;
                }
                data = it->data;
                it->data = NULL;
            }
            if (data == NULL) {
                Py_DECREF(out);
                free_items(items, n);
                return NULL;
            }
            row = Py_BuildValue("(NLLi)", data, it->size, it->nlink, 0);
        }
        if (row == NULL) {
            Py_DECREF(out);
            free_items(items, n);
            return NULL;
        }
        PyList_SET_ITEM(out, i, row);
    }
    free_items(items, n);
    return out;
}

static PyMethodDef methods[] = {
    {"read_many", read_many, METH_VARARGS,
     "read_many(fds, positions, limit, nowait=False) -> [(data, size, nlink, errno), ...]: "
     "fstat each fd, then pread up to `limit` bytes from its position (errno 0: no error); "
     "nowait: only what the page cache holds, else errno EAGAIN."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastread", "The tail input's read pass in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastread(void)
{
    return PyModule_Create(&module);
}
