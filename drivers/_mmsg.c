/* Many frames per system call on a packet socket: sendmmsg(2) and recvmmsg(2),
 * which Python's socket module does not offer. The optional speedup of
 * drivers.afpacket (the per-frame send()/recv() loop stays the reference and
 * the fallback; PYSEASTAR_PURE_PYTHON=1 selects it).
 *
 * send_many(fd, frames, prefix) -> (messages sent, bytes sent, errors)
 *     Each frame is a bytes-like object, or exactly a tuple or list of them
 *     (the pieces of one frame, sent as one message with an iovec each; a
 *     tuple subclass such as a TxFrame is taken as one buffer, and refused as
 *     not one). `prefix` (a
 *     bytes-like object, or None) goes in front of every frame given as one
 *     buffer (the zero virtio-net header). A frame the kernel refuses with
 *     EAGAIN, ENOBUFS or EMSGSIZE is skipped and counted as an error, as the
 *     per-frame loop does; any other error raises OSError.
 *
 * recv_many(fd, n, size) -> list of bytes
 *     Up to n frames already waiting (MSG_DONTWAIT), each at most `size` bytes
 *     (longer ones are cut, as recv(size) cuts them). [] when none waits; an
 *     error other than EAGAIN raises OSError.
 *
 * Both keep the GIL: the socket is non-blocking, so the call never waits, and
 * the receive area is shared by every call.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SEND_CHUNK 256      /* messages per sendmmsg call */
#define RECV_MAX 1024       /* frames per recv_many call */

static PyObject *
send_many(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *frames, *prefix_obj;
    if (!PyArg_ParseTuple(args, "iOO", &fd, &frames, &prefix_obj))
        return NULL;
    PyObject *seq = PySequence_Fast(frames, "frames must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);

    Py_buffer prefix;
    int has_prefix = prefix_obj != Py_None;
    if (has_prefix && PyObject_GetBuffer(prefix_obj, &prefix, PyBUF_SIMPLE) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    /* one Py_buffer per piece and one iovec per piece (plus the prefix) */
    Py_ssize_t npieces = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *f = items[i];
        if (PyTuple_CheckExact(f) || PyList_CheckExact(f))
            npieces += PySequence_Fast_GET_SIZE(f);
        else
            npieces += 1;
    }
    Py_buffer *views = PyMem_Calloc(npieces ? npieces : 1, sizeof(Py_buffer));
    struct iovec *iov = PyMem_Calloc(npieces + count + 1, sizeof(struct iovec));
    struct mmsghdr *msgs = PyMem_Calloc(count ? count : 1, sizeof(struct mmsghdr));
    Py_ssize_t nviews = 0;
    PyObject *result = NULL;
    if (views == NULL || iov == NULL || msgs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *f = items[i];
        struct msghdr *h = &msgs[i].msg_hdr;
        h->msg_iov = &iov[k];
        if (PyTuple_CheckExact(f) || PyList_CheckExact(f)) {
            Py_ssize_t np = PySequence_Fast_GET_SIZE(f);
            PyObject **parts = PySequence_Fast_ITEMS(f);
            for (Py_ssize_t j = 0; j < np; j++) {
                if (PyObject_GetBuffer(parts[j], &views[nviews], PyBUF_SIMPLE) < 0)
                    goto done;
                iov[k].iov_base = views[nviews].buf;
                iov[k].iov_len = (size_t)views[nviews].len;
                nviews++;
                k++;
            }
            h->msg_iovlen = (size_t)np;
        } else {
            size_t n = 0;
            if (has_prefix) {
                iov[k].iov_base = prefix.buf;
                iov[k].iov_len = (size_t)prefix.len;
                k++;
                n++;
            }
            if (PyObject_GetBuffer(f, &views[nviews], PyBUF_SIMPLE) < 0)
                goto done;
            iov[k].iov_base = views[nviews].buf;
            iov[k].iov_len = (size_t)views[nviews].len;
            nviews++;
            k++;
            h->msg_iovlen = n + 1;
        }
    }
    Py_ssize_t sent = 0, errors = 0;
    long long nbytes = 0;
    Py_ssize_t i = 0;
    while (i < count) {
        unsigned int want = (unsigned int)(count - i < SEND_CHUNK ? count - i : SEND_CHUNK);
        int r = sendmmsg(fd, &msgs[i], want, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EMSGSIZE) {
                errors++;       /* this frame is lost; the next ones may still go */
                i++;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        if (r == 0) {           /* not expected: never loop on it */
            errors++;
            i++;
            continue;
        }
        for (int j = 0; j < r; j++)
            nbytes += msgs[i + j].msg_len;
        sent += r;
        i += r;
    }
    result = Py_BuildValue("nLn", sent, nbytes, errors);
done:
    for (Py_ssize_t j = 0; j < nviews; j++)
        PyBuffer_Release(&views[j]);
    if (has_prefix)
        PyBuffer_Release(&prefix);
    PyMem_Free(views);
    PyMem_Free(iov);
    PyMem_Free(msgs);
    Py_DECREF(seq);
    return result;
}

static char *recv_area = NULL;      /* RECV_MAX frames at most, grown on demand */
static size_t recv_area_size = 0;

static PyObject *
recv_many(PyObject *self, PyObject *args)
{
    int fd, n;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin", &fd, &n, &size))
        return NULL;
    if (n <= 0 || size <= 0)
        return PyList_New(0);
    if (n > RECV_MAX)
        n = RECV_MAX;
    size_t need = (size_t)n * (size_t)size;
    if (need > recv_area_size) {
        char *a = PyMem_Realloc(recv_area, need);
        if (a == NULL)
            return PyErr_NoMemory();
        recv_area = a;
        recv_area_size = need;
    }
    struct mmsghdr msgs[RECV_MAX];
    struct iovec iov[RECV_MAX];
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)n);
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = recv_area + (size_t)i * (size_t)size;
        iov[i].iov_len = (size_t)size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r;
    do {
        r = recvmmsg(fd, msgs, (unsigned int)n, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(r);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < r; i++) {
        size_t len = msgs[i].msg_len < (unsigned int)size ? msgs[i].msg_len : (size_t)size;
        PyObject *b = PyBytes_FromStringAndSize(iov[i].iov_base, (Py_ssize_t)len);
        if (b == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, b);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, "Send frames with sendmmsg: (sent, bytes, errors)."},
    {"recv_many", recv_many, METH_VARARGS, "Receive up to n waiting frames with recvmmsg."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mmsg", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__mmsg(void)
{
    return PyModule_Create(&module);
}
