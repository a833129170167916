"""Times the diffusion cases of `npdec bench` in Devito or numpy and prints one JSON object per case.

The problems are those of `npdec bench`: float32, spacing 1, a zero Dirichlet halo, uniform random
initial data in [0, 1), explicit Euler with c = nu*dt/h^2 = 0.1 at order 2 and 0.05 at order 8:
diffusion2d_o2 (5-point Laplacian on 4096^2) and diffusion3d_o2, diffusion3d_o8 (7-point and
25-point Laplacians on 256^3). Points per second are N^d * steps / wall time of the time loop,
compilation excluded.

Usage: stencil_reference.py {devito,numpy} [--steps N] [--cases a,b] [--points-2d N] [--points-3d N]
Devito's thread count comes from OMP_NUM_THREADS; numpy runs on one thread.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

CASES = {
    "diffusion2d_o2": (2, 2, 0.1),
    "diffusion3d_o2": (3, 2, 0.1),
    "diffusion3d_o8": (3, 8, 0.05),
}


def initial(shape):
    return np.random.default_rng(42).random(shape, dtype=np.float32)


def devito_case(dimensions, order, c, points, steps):
    from devito import Eq, Grid, Operator, TimeFunction

    shape = (points,) * dimensions
    grid = Grid(shape=shape, extent=tuple(float(points - 1) for _ in shape), dtype=np.float32)
    u = TimeFunction(name="u", grid=grid, space_order=order, time_order=1)
    u.data[0] = initial(shape)
    u.data[1] = 0.0
    operator = Operator([Eq(u.forward, u + np.float32(c) * u.laplace)], opt=("advanced", {"openmp": True}))
    # The first call compiles the operator; time a second one over the whole run.
    operator.apply(time_m=0, time_M=0)
    u.data[0] = initial(shape)
    u.data[1] = 0.0
    started = time.perf_counter()
    operator.apply(time_m=0, time_M=steps - 1)
    seconds = time.perf_counter() - started
    return seconds, float(np.abs(u.data[steps % 2]).sum())


def laplacian_weights(order):
    # Central second-derivative weights, offsets 0..order/2.
    return {
        2: [-2.0, 1.0],
        8: [-205.0 / 72.0, 8.0 / 5.0, -1.0 / 5.0, 8.0 / 315.0, -1.0 / 560.0],
    }[order]


def numpy_case(dimensions, order, c, points, steps):
    r = order // 2
    weights = [np.float32(w) for w in laplacian_weights(order)]
    c = np.float32(c)
    shape = tuple(points + 2 * r for _ in range(dimensions))
    u = np.zeros(shape, dtype=np.float32)
    v = np.zeros(shape, dtype=np.float32)
    inner = tuple(slice(r, r + points) for _ in range(dimensions))
    u[inner] = initial((points,) * dimensions)

    def shifted(a, axis, k):
        return a[tuple(slice(r + k, r + k + points) if d == axis else slice(r, r + points) for d in range(dimensions))]

    started = time.perf_counter()
    for _ in range(steps):
        centre = u[inner]
        lap = (dimensions * weights[0]) * centre
        for axis in range(dimensions):
            for k in range(1, r + 1):
                lap += weights[k] * (shifted(u, axis, k) + shifted(u, axis, -k))
        v[inner] = centre + c * lap
        u, v = v, u
    seconds = time.perf_counter() - started
    return seconds, float(np.abs(u[inner]).sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["devito", "numpy"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--points-2d", type=int, default=4096)
    parser.add_argument("--points-3d", type=int, default=256)
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1")) if args.engine == "devito" else 1
    for name in args.cases.split(","):
        dimensions, order, c = CASES[name]
        points = args.points_2d if dimensions == 2 else args.points_3d
        run = devito_case if args.engine == "devito" else numpy_case
        seconds, checksum = run(dimensions, order, c, points, args.steps)
        record = {
            "engine": args.engine,
            "case": name,
            "threads": threads,
            "steps": args.steps,
            "gpts_per_s": points**dimensions * args.steps / seconds / 1e9,
            "checksum": checksum,
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    sys.exit(main())
