/* An impairment bridge: relays Ethernet frames between two interfaces
 * (AF_PACKET, promiscuous) with seeded loss, reordering, duplication,
 * corruption and delay, each direction with its own generator. Runs inside
 * the bridge namespace of scripts/bench/lossy.py (which builds it with gcc)
 * until SIGTERM/SIGINT or --duration passes; prints its counters as JSON.
 *
 *   impair_bridge IF_A IF_B [--loss P] [--reorder P] [--dup P] [--corrupt P]
 *                 [--delay-ms MS] [--seed N] [--duration S]      (P in percent)
 *
 * In C, with recvmmsg/sendmmsg, so that the bridge is not what limits the
 * benchmark: the Python bridge it replaces ran at 100% of a core and capped a
 * Linux-to-Linux BBR echo at 5% loss near 30 MB/s.
 *
 * Per frame, in this order: lost with P(loss); else one byte past the Ethernet
 * header flipped with P(corrupt); sent twice with P(dup); each copy, when no
 * frame is held, held back with P(reorder) to go out right after the next
 * frame. What goes out waits the delay (one for all, so first in, first out).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#define BATCH 64
#define SLOT 65536
#define QMAX 65536          /* frames waiting out the delay, per direction */

struct frame { uint64_t due; uint32_t len; unsigned char *data; };

struct dir {
    const char *name;
    int src, dst;
    uint64_t rng;
    unsigned char *held; uint32_t held_len;
    struct frame q[QMAX];
    unsigned head, tail;                /* the FIFO of delayed frames */
    unsigned long long in, out, lost, reordered, duplicated, corrupted, overflow;
};

static double p_loss, p_reorder, p_dup, p_corrupt;
static uint64_t delay_ns;
static volatile sig_atomic_t stop;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rnd(struct dir *d) { return (splitmix(&d->rng) >> 11) * (1.0 / 9007199254740992.0); }

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int open_if(const char *name)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (s < 0) { perror("socket"); exit(1); }
    struct sockaddr_ll a = {0};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = (int)if_nametoindex(name);
    if (!a.sll_ifindex || bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror(name); exit(1); }
    struct packet_mreq m = {0};
    m.mr_ifindex = a.sll_ifindex;
    m.mr_type = PACKET_MR_PROMISC;
    setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof m);
    int one = 1, buf = 8 << 20;
    setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);   /* not our own sends again */
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    return s;
}

static void enqueue(struct dir *d, const unsigned char *p, uint32_t len, uint64_t due)
{
    if (d->tail - d->head >= QMAX) { d->overflow++; return; }
    unsigned char *c = malloc(len);
    if (!c) { d->overflow++; return; }
    memcpy(c, p, len);
    struct frame *f = &d->q[d->tail++ % QMAX];
    f->due = due; f->len = len; f->data = c;
}

static void take(struct dir *d, unsigned char *p, uint32_t len, uint64_t due)
{
    d->in++;
    if (rnd(d) < p_loss) { d->lost++; return; }
    if (rnd(d) < p_corrupt && len > 14) {
        p[14 + splitmix(&d->rng) % (len - 14)] ^= 0xFF;
        d->corrupted++;
    }
    int copies = rnd(d) < p_dup ? 2 : 1;
    if (copies == 2) d->duplicated++;
    for (int i = 0; i < copies; i++) {
        if (!d->held && rnd(d) < p_reorder) {
            d->held = malloc(len);
            if (!d->held) { d->overflow++; continue; }
            memcpy(d->held, p, len);
            d->held_len = len;
            d->reordered++;
            continue;
        }
        enqueue(d, p, len, due);
        if (d->held) {
            enqueue(d, d->held, d->held_len, due);
            free(d->held);
            d->held = NULL;
        }
    }
}

static void flush(struct dir *d, uint64_t now)
{
    struct mmsghdr m[BATCH];
    struct iovec v[BATCH];
    while (d->head != d->tail && d->q[d->head % QMAX].due <= now) {
        int n = 0;
        while (n < BATCH && d->head + (unsigned)n != d->tail && d->q[(d->head + n) % QMAX].due <= now) {
            struct frame *f = &d->q[(d->head + n) % QMAX];
            v[n].iov_base = f->data; v[n].iov_len = f->len;
            memset(&m[n], 0, sizeof m[n]);
            m[n].msg_hdr.msg_iov = &v[n]; m[n].msg_hdr.msg_iovlen = 1;
            n++;
        }
        int r = sendmmsg(d->dst, m, (unsigned)n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            r = 1;                      /* this frame is refused (full queue, too big): lost */
        } else {
            d->out += (unsigned)r;
        }
        for (int i = 0; i < r; i++) {
            free(d->q[d->head % QMAX].data);
            d->head++;
        }
    }
}

static void relay(struct dir *d, unsigned char *area)
{
    struct mmsghdr m[BATCH];
    struct iovec v[BATCH];
    for (int i = 0; i < BATCH; i++) {
        v[i].iov_base = area + (size_t)i * SLOT; v[i].iov_len = SLOT;
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1;
    }
    for (int rounds = 0; rounds < 4; rounds++) {
        int r = recvmmsg(d->src, m, BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0) return;
        uint64_t due = now_ns() + delay_ns;
        for (int i = 0; i < r; i++)
            take(d, area + (size_t)i * SLOT, m[i].msg_len < SLOT ? m[i].msg_len : SLOT, due);
        if (!delay_ns) flush(d, due);
        if (r < BATCH) return;
    }
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static void print_dir(struct dir *d, int last)
{
    printf("\"%s\": {\"in\": %llu, \"out\": %llu, \"lost\": %llu, \"reordered\": %llu, \"duplicated\": %llu, "
           "\"corrupted\": %llu, \"overflow\": %llu}%s", d->name, d->in, d->out, d->lost, d->reordered,
           d->duplicated, d->corrupted, d->overflow, last ? "" : ", ");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s IF_A IF_B [--loss P] [--reorder P] [--dup P] [--corrupt P] "
                        "[--delay-ms MS] [--seed N] [--duration S]\n", argv[0]);
        return 2;
    }
    double delay_ms = 0, duration = 600;
    long long seed = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        double x = atof(argv[i + 1]);
        if (!strcmp(argv[i], "--loss")) p_loss = x / 100;
        else if (!strcmp(argv[i], "--reorder")) p_reorder = x / 100;
        else if (!strcmp(argv[i], "--dup")) p_dup = x / 100;
        else if (!strcmp(argv[i], "--corrupt")) p_corrupt = x / 100;
        else if (!strcmp(argv[i], "--delay-ms")) delay_ms = x;
        else if (!strcmp(argv[i], "--seed")) seed = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) duration = x;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    delay_ns = (uint64_t)(delay_ms * 1e6);
    static struct dir ab, ba;
    char name_ab[64], name_ba[64];
    snprintf(name_ab, sizeof name_ab, "%s->%s", argv[1], argv[2]);
    snprintf(name_ba, sizeof name_ba, "%s->%s", argv[2], argv[1]);
    int sa = open_if(argv[1]), sb = open_if(argv[2]);
    ab.name = name_ab; ab.src = sa; ab.dst = sb; ab.rng = (uint64_t)seed * 2;
    ba.name = name_ba; ba.src = sb; ba.dst = sa; ba.rng = (uint64_t)seed * 2 + 1;
    unsigned char *area = malloc((size_t)BATCH * SLOT);
    if (!area) return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    uint64_t end = now_ns() + (uint64_t)(duration * 1e9);
    struct pollfd p[2] = {{sa, POLLIN, 0}, {sb, POLLIN, 0}};
    while (!stop) {
        uint64_t t = now_ns();
        if (t >= end) break;
        uint64_t wait = 50000000ull;      /* at most 50 ms, less when a delayed frame falls due */
        struct dir *ds[2] = {&ab, &ba};
        for (int i = 0; i < 2; i++) {
            struct dir *d = ds[i];
            if (d->head != d->tail) {
                uint64_t due = d->q[d->head % QMAX].due;
                uint64_t w = due > t ? due - t : 0;
                if (w < wait) wait = w;
            }
        }
        struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
        int r = ppoll(p, 2, &ts, NULL);
        if (r < 0 && errno != EINTR) { perror("poll"); break; }
        if (r > 0) {
            if (p[0].revents & POLLIN) relay(&ab, area);
            if (p[1].revents & POLLIN) relay(&ba, area);
        }
        t = now_ns();
        flush(&ab, t);
        flush(&ba, t);
    }
    printf("{");
    print_dir(&ab, 0);
    print_dir(&ba, 1);
    printf("}\n");
    fflush(stdout);
    return 0;
}
