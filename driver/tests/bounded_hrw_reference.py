#!/usr/bin/env python3
"""Independent transcription of the bucket-array contract (driver/src/tables/buckets.rs module docs,
docs/architecture.md "Bucket arrays"): BoundedRendezvous with M = 2^m_log2.

Usage: bounded_hrw_reference.py M_LOG2 KEY... (IPv6 addresses); prints the array as input indices, space separated.
"""
import ipaddress
import sys

MASK = (1 << 64) - 1
KEY_SEED = 0x6972_6F6E_6C62_6B65
SLOT_SEED = 0x6972_6F6E_6C62_736C
LOAD_NUM, LOAD_DEN = 6, 5


def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def kh(key):
    hi, lo = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big")
    return mix(mix(hi ^ KEY_SEED) ^ lo)


def assign(keys, m_log2):
    m, n = 1 << m_log2, len(keys)
    base = ((LOAD_NUM * m) << 32) // (LOAD_DEN * n)
    hs = [kh(k) for k in keys]
    cap = [(base + (h >> 32)) >> 32 for h in hs]
    # 1. favourite of every slot: highest weight, lower key on ties
    def ranked(c):
        s = mix(c ^ SLOT_SEED)
        return sorted(range(n), key=lambda i: (-mix(hs[i] ^ s), keys[i]))
    fav = [ranked(c)[0] for c in range(m)]
    # 2. each target keeps its cap favourite slots of highest weight (lower index on ties)
    out, load = [None] * m, [0] * n
    for i in range(n):
        mine = sorted((c for c in range(m) if fav[c] == i), key=lambda c: (-mix(hs[i] ^ mix(c ^ SLOT_SEED)), c))
        for c in mine[: cap[i]]:
            out[c] = i
            load[i] += 1
    # 3. shed slots in index order: highest weight below capacity, else the favourite
    for c in range(m):
        if out[c] is None:
            pick = next((i for i in ranked(c) if load[i] < cap[i]), fav[c])
            out[c] = pick
            load[pick] += 1
    return out


if __name__ == "__main__":
    m_log2 = int(sys.argv[1])
    keys = [ipaddress.IPv6Address(a).packed for a in sys.argv[2:]]
    print(" ".join(str(i) for i in assign(keys, m_log2)))
