"""Steering the kernel to our RSS hash: BPF programs that compute the Toeplitz
hash of a received frame's IPv4 4-tuple and the shard the redirection table
names (netstack.rss), so the kernel delivers every flow to the queue or socket
of the shard that owns it and nothing needs forwarding.

* AF_PACKET: a classic BPF program in a PACKET_FANOUT_CBPF group
  (`attach_fanout_cbpf`): the socket index is the program's result modulo the
  group size, sockets numbered in the order they joined.
* multi-queue TAP: an eBPF socket-filter program set with TUNSETSTEERINGEBPF
  (`load_socket_filter`, `set_tap_steering`): the queue is the result modulo the
  number of queues, numbered in the order they were attached.

Both programs are unrolled loops over the 96 input bits: for each set bit the
hash takes the XOR of the 32-bit key window at that bit (the same windows as
netstack.rss.Toeplitz), then `shard = table[hash % 128]` with the table's
`i % shards` layout. Frames that are not TCP/UDP over IPv4 without options, IP
fragments and DHCP replies give shard 0, as ShardDevice.owner does. The programs
are checked against FlowSteering.shard_of by small interpreters in the tests
and on the kernel by the sharding tests (no frame forwarded).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct


# ---- the plan both programs follow -------------------------------------------------------

INPUT_BYTES = 12        # src ip, dst ip, src port, dst port: bytes 12..23 of the IPv4 header


def _windows(key: bytes) -> list[int]:
    k = int.from_bytes(key, "big")
    klen = len(key) * 8
    return [(k >> (klen - 32 - i)) & 0xFFFFFFFF for i in range(INPUT_BYTES * 8)]


def _check_table(table) -> tuple[int, int]:
    """(size, shards) of a redirection table given as plain data (entry i: the
    shard of hash bucket i). The programs compute `(hash & (size - 1)) % shards`,
    so they need the layout `i % shards` over a power-of-two size."""
    table = list(table)
    size = len(table)
    shards = max(table) + 1 if table else 0
    if not size or size & (size - 1) or table != [i % shards for i in range(size)]:
        raise ValueError("the steering programs assume the default redirection table (i % shards, 2**k entries)")
    return size, shards


# ---- classic BPF (AF_PACKET fanout) -------------------------------------------------------

SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_NET_OFF = -0x100000

LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LD_IMM, LD_MEM, ST_MEM = 0x00, 0x60, 0x02
ALU_XOR_K, ALU_AND_K, ALU_MOD_K = 0xA4, 0x54, 0x94
JA, JEQ_K, JSET_K = 0x05, 0x15, 0x45
RET_K, RET_A = 0x06, 0x16
TAX, TXA = 0x07, 0x87

_SOCK_FILTER = struct.Struct("HBBI")


def toeplitz_cbpf(key: bytes, table) -> list[tuple[int, int, int, int]]:
    """[(code, jt, jf, k)]: the shard (0..shards-1) of a frame, with packet offsets
    relative to the network header (SKF_NET_OFF), as a fanout program sees it.
    `key`: the Toeplitz key; `table`: the redirection table (see _check_table)."""
    size, shards = _check_table(table)
    net = SKF_NET_OFF
    p: list = []
    # prologue; each test's failure jumps to RET0 (patched once its place is known)
    fails = []

    def test(code, k, fail_if_true):
        fails.append((len(p), fail_if_true))
        p.append([code, 0, 0, k])

    p.append([LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PROTOCOL])    # A = skb->protocol
    test(JEQ_K, 0x0800, False)
    p.append([LD_B_ABS, 0, 0, net + 0])
    test(JEQ_K, 0x45, False)                                   # IPv4, no options
    p.append([LD_H_ABS, 0, 0, net + 6])
    test(JSET_K, 0x3FFF, True)                                 # a fragment
    p.append([LD_B_ABS, 0, 0, net + 9])
    tcp_jump = len(p)
    p.append([JEQ_K, 0, 0, 6])                                 # TCP: to MAIN (patched)
    test(JEQ_K, 17, False)                                     # else UDP or RET0
    p.append([LD_H_ABS, 0, 0, net + 22])
    test(JEQ_K, 68, True)                                      # DHCP reply: shard 0 runs the client
    p.append([JA, 0, 0, 1])                                    # over RET0
    ret0 = len(p)
    p.append([RET_K, 0, 0, 0])
    main = len(p)
    for i, fail_if_true in fails:
        off = ret0 - i - 1
        if fail_if_true:
            p[i][1] = off
        else:
            p[i][2] = off
    p[tcp_jump][1] = main - tcp_jump - 1
    # the hash in M[0], the current input byte in X
    p.append([LD_IMM, 0, 0, 0])
    p.append([ST_MEM, 0, 0, 0])
    w = _windows(key)
    for byte in range(INPUT_BYTES):
        p.append([LD_B_ABS, 0, 0, net + 12 + byte])
        p.append([TAX, 0, 0, 0])
        for bit in range(8):
            p.append([TXA, 0, 0, 0])
            p.append([JSET_K, 0, 3, 0x80 >> bit])
            p.append([LD_MEM, 0, 0, 0])
            p.append([ALU_XOR_K, 0, 0, w[byte * 8 + bit]])
            p.append([ST_MEM, 0, 0, 0])
    p.append([LD_MEM, 0, 0, 0])
    p.append([ALU_AND_K, 0, 0, size - 1])
    p.append([ALU_MOD_K, 0, 0, shards])
    p.append([RET_A, 0, 0, 0])
    return [tuple(i) for i in p]


def cbpf_bytes(prog) -> bytes:
    return b"".join(_SOCK_FILTER.pack(code, jt, jf, k & 0xFFFFFFFF) for code, jt, jf, k in prog)


SOL_PACKET = 263
PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_CBPF = 6


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def attach_fanout_cbpf(socks: list, group: int, key: bytes, table) -> None:
    """Join `socks` (AF_PACKET sockets, in shard order) to one PACKET_FANOUT_CBPF
    group and give it the steering program."""
    code = cbpf_bytes(toeplitz_cbpf(key, table))
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    for s in socks:
        s.setsockopt(SOL_PACKET, PACKET_FANOUT, (group & 0xFFFF) | (PACKET_FANOUT_CBPF << 16))
    socks[0].setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, bytes(fprog))


# ---- eBPF (multi-queue TAP) -------------------------------------------------------------

_INSN = struct.Struct("<BBhi")

E_MOV64_REG, E_MOV32_IMM = 0xBF, 0xB4
E_LD_ABS_B, E_LD_ABS_H = 0x30, 0x28
E_RSH64_IMM, E_AND64_IMM = 0x77, 0x57
E_MUL32_IMM, E_XOR32_REG, E_AND32_IMM, E_MOD32_IMM = 0x24, 0xAC, 0x54, 0x94
E_JEQ_IMM, E_JNE_IMM, E_JSET_IMM, E_JA = 0x15, 0x55, 0x45, 0x05
E_EXIT = 0x95


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def toeplitz_ebpf(key: bytes, table, l2: int = 14) -> list[tuple[int, int, int, int, int]]:
    """[(code, dst, src, off, imm)]: a socket-filter program returning the shard of
    a frame whose IPv4 header starts `l2` bytes into the packet (a TAP's steering
    program sees the Ethernet header). Branch-free hash: r7 ^= bit * window."""
    size, shards = _check_table(table)
    p: list = []
    to_ret0 = []

    def ld(code, at):
        p.append([code, 0, 0, 0, at])

    p.append([E_MOV64_REG, 6, 1, 0, 0])                 # r6 = ctx (LD_ABS needs it)
    ld(E_LD_ABS_H, l2 - 2)                              # ethertype
    to_ret0.append(len(p))
    p.append([E_JNE_IMM, 0, 0, 0, 0x0800])
    ld(E_LD_ABS_B, l2)
    to_ret0.append(len(p))
    p.append([E_JNE_IMM, 0, 0, 0, 0x45])
    ld(E_LD_ABS_H, l2 + 6)
    to_ret0.append(len(p))
    p.append([E_JSET_IMM, 0, 0, 0, 0x3FFF])
    ld(E_LD_ABS_B, l2 + 9)
    tcp_jump = len(p)
    p.append([E_JEQ_IMM, 0, 0, 0, 6])
    to_ret0.append(len(p))
    p.append([E_JNE_IMM, 0, 0, 0, 17])
    ld(E_LD_ABS_H, l2 + 22)
    to_ret0.append(len(p))
    p.append([E_JEQ_IMM, 0, 0, 0, 68])
    main = len(p)
    p[tcp_jump][3] = main - tcp_jump - 1
    p.append([E_MOV32_IMM, 7, 0, 0, 0])                  # r7 = hash
    w = _windows(key)
    for byte in range(INPUT_BYTES):
        ld(E_LD_ABS_B, l2 + 12 + byte)
        p.append([E_MOV64_REG, 8, 0, 0, 0])              # r8 = the byte (LD_ABS clobbers r1-r5)
        for bit in range(8):
            p.append([E_MOV64_REG, 1, 8, 0, 0])
            p.append([E_RSH64_IMM, 1, 0, 0, 7 - bit])
            p.append([E_AND64_IMM, 1, 0, 0, 1])
            p.append([E_MUL32_IMM, 1, 0, 0, _s32(w[byte * 8 + bit])])
            p.append([E_XOR32_REG, 7, 1, 0, 0])
    p.append([E_MOV64_REG, 0, 7, 0, 0])
    p.append([E_AND32_IMM, 0, 0, 0, size - 1])
    p.append([E_MOD32_IMM, 0, 0, 0, shards])
    p.append([E_EXIT, 0, 0, 0, 0])
    ret0 = len(p)
    p.append([E_MOV32_IMM, 0, 0, 0, 0])
    p.append([E_EXIT, 0, 0, 0, 0])
    for i in to_ret0:
        p[i][3] = ret0 - i - 1
    return [tuple(i) for i in p]


def ebpf_bytes(prog) -> bytes:
    return b"".join(_INSN.pack(code, (src << 4) | dst, off, imm) for code, dst, src, off, imm in prog)


SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SOCKET_FILTER = 1
TUNSETSTEERINGEBPF = 0x800454E0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def load_socket_filter(code: bytes) -> int:
    """Load an eBPF socket-filter program; returns its fd. OSError with the
    verifier's log when the kernel refuses it."""
    if SYS_BPF is None:
        raise OSError(38, "bpf(): unknown syscall number on this architecture")
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_SOCKET_FILTER, len(code) // 8, ctypes.addressof(insns),
                     ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
    abuf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = _libc.syscall(SYS_BPF, BPF_PROG_LOAD, abuf, len(attr))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf(BPF_PROG_LOAD): {os.strerror(e)}: {log.value.decode(errors='replace')[-300:]}")
    return fd


def set_tap_steering(tap_fd: int, key: bytes, table) -> None:
    """Steer a multi-queue TAP's queues (attached in shard order) by our hash."""
    prog = load_socket_filter(ebpf_bytes(toeplitz_ebpf(key, table)))
    try:
        fcntl.ioctl(tap_fd, TUNSETSTEERINGEBPF, struct.pack("i", prog))
    finally:
        os.close(prog)      # the TAP holds its own reference


__all__ = ["toeplitz_cbpf", "toeplitz_ebpf", "cbpf_bytes", "ebpf_bytes", "attach_fanout_cbpf",
           "load_socket_filter", "set_tap_steering"]
