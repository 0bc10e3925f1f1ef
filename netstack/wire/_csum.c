/* The one's-complement sum of RFC 1071 in C: the optional speedup of
 * netstack.wire.checksum.ones_sum (the pure-Python function stays the
 * reference and the fallback; PYSEASTAR_PURE_PYTHON=1 selects it).
 *
 * ones_sum(buffer) -> int: the sum of the buffer's 16-bit big-endian words
 * (an odd last byte padded with zero), end-around carries folded in, as
 * 0..0xFFFF: 0 only for all-zero data, 0xFFFF for other data that sums to
 * "negative zero" -- the pure function's contract, bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint64_t
sum_words(const unsigned char *p, Py_ssize_t n)
{
    uint64_t acc = 0;
    /* 32-bit big-endian words: at most 2**32 - 1 each, so 2**32 of them fit
       in 64 bits -- far more than any buffer here */
    while (n >= 4) {
        acc += ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        acc += ((uint64_t)p[0] << 8) | p[1];
        p += 2;
        n -= 2;
    }
    if (n)
        acc += (uint64_t)p[0] << 8;
    return acc;
}

static PyObject *
ones_sum(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint64_t acc = sum_words((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    if (acc == 0)
        return PyLong_FromLong(0);
    /* 2**32 == 2**16 == 1 (mod 0xFFFF): fold 32-bit halves, then 16-bit ones */
    while (acc >> 32)
        acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    while (acc >> 16)
        acc = (acc & 0xFFFFu) + (acc >> 16);
    return PyLong_FromUnsignedLong((unsigned long)acc);
}

static PyMethodDef methods[] = {
    {"ones_sum", ones_sum, METH_O, "The one's-complement sum of the buffer's 16-bit big-endian words."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_csum", "RFC 1071 sums in C (optional speedup).", -1, methods,
};

PyMODINIT_FUNC
PyInit__csum(void)
{
    return PyModule_Create(&module);
}
