/* A load generator that is not the bottleneck (one thread, epoll), and a C
 * epoll echo server for the comparison row. Built by scripts/bench/rr.py.
 *
 *   loadgen rr   HOST PORT CONNS SECONDS SIZE   request/response: each connection sends SIZE
 *                                               bytes, waits for SIZE back, again; prints
 *                                               {"requests":N,"seconds":S,"p50_us":..,"p99_us":..}
 *   loadgen conn HOST PORT WORKERS SECONDS      connect, 64 bytes, 64 back, close, again, in
 *                                               WORKERS forked processes; {"connections":N,...}
 *   loadgen bulk HOST PORT MIB                  send MIB MiB and read the echo at once;
 *                                               {"bytes":N,"seconds":S}
 *   loadgen hold HOST PORT CONNS SECONDS        open CONNS connections, one 64-byte round trip
 *                                               on each, print {"held":N} and hold them all
 *                                               open for SECONDS (the server's idle memory)
 *   loadgen burst HOST PORT CONNS               CONNS non-blocking connects at once, each then
 *                                               one 64-byte round trip; {"connected":N,
 *                                               "seconds":S,"max_connect_ms":M} (a listen
 *                                               queue that overflows shows as SYNs resent
 *                                               after 1 s: max_connect_ms >= 1000)
 *   loadgen server HOST PORT                    an epoll echo server (the C row)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static struct sockaddr_in addr_of(const char *host, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", host); exit(2); }
    return a;
}

static int connect_to(struct sockaddr_in *a) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (s < 0) { perror("socket"); exit(1); }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s, (struct sockaddr *)a, sizeof *a) < 0) { close(s); return -1; }
    return s;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

#define MAXC 4096
#define MAXLAT 4000000

static int rr(const char *host, int port, int conns, double seconds, int size) {
    struct sockaddr_in a = addr_of(host, port);
    int ep = epoll_create1(0);
    static int fd[MAXC], got[MAXC];
    static double sent_at[MAXC];
    double *lat = malloc(sizeof(double) * MAXLAT);
    long nlat = 0, requests = 0;
    char *msg = malloc(size), buf[65536];
    memset(msg, 'q', size);
    if (conns > MAXC) conns = MAXC;
    for (int i = 0; i < conns; i++) {
        fd[i] = connect_to(&a);
        if (fd[i] < 0) { perror("connect"); return 1; }
        fcntl(fd[i], F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
    }
    double t0 = now(), end = t0 + seconds;
    for (int i = 0; i < conns; i++) { sent_at[i] = now(); got[i] = 0; if (write(fd[i], msg, size) != size) return 1; }
    struct epoll_event evs[256];
    while (1) {
        double t = now();
        if (t >= end) break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            ssize_t r = read(fd[i], buf, sizeof buf);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; fprintf(stderr, "connection lost\n"); return 1; }
            got[i] += r;
            if (got[i] >= size) {
                double t1 = now();
                if (nlat < MAXLAT) lat[nlat++] = t1 - sent_at[i];
                requests++;
                got[i] -= size;
                sent_at[i] = t1;
                if (t1 < end && write(fd[i], msg, size) != size) { fprintf(stderr, "short write\n"); return 1; }
            }
        }
    }
    double el = now() - t0;
    qsort(lat, nlat, sizeof(double), cmp);
    printf("{\"requests\": %ld, \"seconds\": %.4f, \"p50_us\": %.1f, \"p99_us\": %.1f}\n", requests, el,
           nlat ? lat[nlat / 2] * 1e6 : 0, nlat ? lat[(long)(nlat * 0.99)] * 1e6 : 0);
    return 0;
}

static int conn_mode(const char *host, int port, int workers, double seconds) {
    struct sockaddr_in a = addr_of(host, port);
    int pipes[64][2];
    if (workers > 64) workers = 64;
    double t0 = now();
    for (int w = 0; w < workers; w++) {
        if (pipe(pipes[w]) < 0) return 1;
        if (fork() == 0) {
            long n = 0, failed = 0;
            char msg[64], buf[64];
            memset(msg, 'c', sizeof msg);
            double end = now() + seconds;
            while (now() < end) {
                int s = connect_to(&a);
                if (s < 0) { failed++; continue; }
                if (write(s, msg, 64) != 64) { close(s); failed++; continue; }
                int got = 0;
                while (got < 64) { ssize_t r = read(s, buf, 64 - got); if (r <= 0) break; got += r; }
                close(s);
                if (got == 64) n++; else failed++;
            }
            long out[2] = {n, failed};
            if (write(pipes[w][1], out, sizeof out) != sizeof out) _exit(1);
            _exit(0);
        }
    }
    long total = 0, failed = 0;
    for (int w = 0; w < workers; w++) {
        long in[2] = {0, 0};
        if (read(pipes[w][0], in, sizeof in) != sizeof in) return 1;
        total += in[0];
        failed += in[1];
    }
    while (wait(NULL) > 0) {}
    printf("{\"connections\": %ld, \"failed\": %ld, \"seconds\": %.4f}\n", total, failed, now() - t0);
    return 0;
}

static int bulk(const char *host, int port, long mib) {
    struct sockaddr_in a = addr_of(host, port);
    int s = connect_to(&a);
    if (s < 0) { perror("connect"); return 1; }
    fcntl(s, F_SETFL, O_NONBLOCK);
    long total = mib << 20, sent = 0, got = 0;
    static char out[1 << 16], in[1 << 16];
    memset(out, 'b', sizeof out);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    double t0 = now();
    while (got < total) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, 1000);
        if (n == 0 && now() - t0 > 600) { fprintf(stderr, "stalled\n"); return 1; }
        for (int k = 0; k < n; k++) {
            if ((evs[k].events & EPOLLOUT) && sent < total) {
                long want = total - sent < (long)sizeof out ? total - sent : (long)sizeof out;
                ssize_t w = write(s, out, want);
                if (w > 0) sent += w;
                if (sent >= total) {
                    struct epoll_event e2 = {.events = EPOLLIN, .data.u32 = 0};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s, &e2);
                }
            }
            if (evs[k].events & EPOLLIN) {
                ssize_t r;
                while ((r = read(s, in, sizeof in)) > 0) got += r;
                if (r == 0) { fprintf(stderr, "closed early\n"); return 1; }
            }
        }
    }
    printf("{\"bytes\": %ld, \"seconds\": %.4f}\n", got, now() - t0);
    close(s);
    return 0;
}

static int hold(const char *host, int port, int conns, double seconds) {
    struct sockaddr_in a = addr_of(host, port);
    struct rlimit rl = {conns + 64, conns + 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) { perror("setrlimit"); return 1; }
    int *fd = calloc(conns, sizeof(int));
    char msg[64], buf[64];
    memset(msg, 'h', sizeof msg);
    for (int i = 0; i < conns; i++) {
        fd[i] = connect_to(&a);
        if (fd[i] < 0) { perror("connect"); return 1; }
        if (write(fd[i], msg, sizeof msg) != sizeof msg) { fprintf(stderr, "short write\n"); return 1; }
        for (int got = 0; got < (int)sizeof buf;) {
            ssize_t r = read(fd[i], buf + got, sizeof buf - got);
            if (r <= 0) { fprintf(stderr, "connection lost\n"); return 1; }
            got += r;
        }
    }
    printf("{\"held\": %d}\n", conns);
    fflush(stdout);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    for (int i = 0; i < conns; i++) close(fd[i]);
    return 0;
}

static int burst(const char *host, int port, int conns) {
    struct sockaddr_in a = addr_of(host, port);
    struct rlimit rl = {conns + 64, conns + 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) { perror("setrlimit"); return 1; }
    int ep = epoll_create1(0), *fd = calloc(conns, sizeof(int)), *st = calloc(conns, sizeof(int));
    double *t0 = calloc(conns, sizeof(double)), worst = 0, start = now();
    char msg[64], buf[64];
    memset(msg, 'b', sizeof msg);
    for (int i = 0; i < conns; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        t0[i] = now();
        if (connect(fd[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) { perror("connect"); return 1; }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
    }
    int done = 0, failed = 0;
    struct epoll_event evs[256];
    while (done + failed < conns && now() - start < 60) {
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            if (st[i] == 0) {              /* connected (or failed) */
                int err = 0; socklen_t len = sizeof err;
                getsockopt(fd[i], SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) { failed++; st[i] = 3; epoll_ctl(ep, EPOLL_CTL_DEL, fd[i], NULL); continue; }
                double ms = (now() - t0[i]) * 1e3;
                if (ms > worst) worst = ms;
                if (write(fd[i], msg, sizeof msg) != sizeof msg) { failed++; st[i] = 3; continue; }
                st[i] = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd[i], &ev);
            } else if (st[i] == 1) {
                ssize_t r = read(fd[i], buf, sizeof buf);
                if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; failed++; st[i] = 3; continue; }
                st[i] = 2;
                done++;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd[i], NULL);
            }
        }
    }
    double el = now() - start;
    for (int i = 0; i < conns; i++) close(fd[i]);
    printf("{\"connected\": %d, \"failed\": %d, \"seconds\": %.4f, \"max_connect_ms\": %.1f}\n", done, failed, el,
           worst);
    return 0;
}

static int server(const char *host, int port) {
    struct sockaddr_in a = addr_of(host, port);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0) { perror("listen"); return 1; }
    fcntl(l, F_SETFL, O_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    static char buf[1 << 16];
    struct epoll_event evs[256];
    signal(SIGPIPE, SIG_IGN);
    while (1) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int k = 0; k < n; k++) {
            int f = evs[k].data.fd;
            if (f == l) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
                continue;
            }
            ssize_t r = read(f, buf, sizeof buf);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; close(f); continue; }
            ssize_t off = 0;
            while (off < r) {      /* blocking-ish: the echo must go out whole */
                ssize_t w = write(f, buf + off, r - off);
                if (w < 0) { if (errno == EAGAIN) { usleep(50); continue; } break; }
                off += w;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 7 && !strcmp(argv[1], "rr")) return rr(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
    if (argc >= 6 && !strcmp(argv[1], "conn")) return conn_mode(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc >= 5 && !strcmp(argv[1], "bulk")) return bulk(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc >= 6 && !strcmp(argv[1], "hold")) return hold(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc >= 5 && !strcmp(argv[1], "burst")) return burst(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "server")) return server(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: loadgen rr|conn|bulk|server ...\n");
    return 2;
}
