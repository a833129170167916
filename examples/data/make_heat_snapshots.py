#!/usr/bin/env python3
"""Writes the snapshots that examples/identify_diffusion.npde fits.

Each sample is a heat-equation solution u_t = D u_xx on [0, 1] with u = 0 at both ends and
D = 0.1: its initial state u(x, 0) = sum_k a_k sin(k pi x) (modes 1 to 3, random amplitudes) and
its state at t = 0.1, u(x, 0.1) = sum_k a_k exp(-D k^2 pi^2 0.1) sin(k pi x), with Gaussian
noise of standard deviation 0.01 added to both, on 51 points. Standard library only (no numpy):
the NPY files are written by hand (format version 1.0, little-endian float64).
"""
import math
import random
import struct

D = 0.1
T = 0.1
POINTS = 51
SAMPLES = 24
NOISE = 0.01


def write_npy(path, rows):
    shape = f"({len(rows)}, {len(rows[0])})"
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
    # Pad so that the data starts at a multiple of 64 bytes, ending the header with a newline.
    padding = 64 - (10 + len(header) + 1) % 64
    header = header + " " * padding + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00")
        f.write(struct.pack("<H", len(header)))
        f.write(header.encode("latin1"))
        for row in rows:
            f.write(struct.pack(f"<{len(row)}d", *row))


def main():
    rng = random.Random(20261204)
    xs = [i / (POINTS - 1) for i in range(POINTS)]
    initial, final = [], []
    for _ in range(SAMPLES):
        amplitudes = [rng.uniform(-1.0, 1.0) for _ in range(3)]
        def state(t):
            return [
                sum(a * math.exp(-D * (k + 1) ** 2 * math.pi**2 * t) * math.sin((k + 1) * math.pi * x)
                    for k, a in enumerate(amplitudes))
                for x in xs
            ]
        u0 = [v + rng.gauss(0.0, NOISE) for v in state(0.0)]
        u1 = [v + rng.gauss(0.0, NOISE) for v in state(T)]
        # The boundary nodes are held at 0 by the model; noise there would only add a constant misfit.
        u0[0] = u0[-1] = 0.0
        u1[0] = u1[-1] = 0.0
        initial.append(u0)
        final.append(u1)
    write_npy("heat_initial.npy", initial)
    write_npy("heat_final.npy", final)


if __name__ == "__main__":
    main()
