# SPDX-License-Identifier: Apache-2.0
"""torch_check: a PyTorch workload that checks its own GPU data every step,
to prove that a checkpoint/restore kept it.

    python3 torch_check.py [GIB] [INTERVAL_S]       (defaults: 1 GiB, 0.2 s)

It holds GIB GiB of VRAM as one int64 tensor x = arange(n) and bumps every
element by one per step; step K checks, on the GPU, that x.sum() equals
sum(arange(n)) + K * n (exact in int64 up to 16 GiB) and that a spot check of
words equals i + K.  It also keeps two fixed 2048x2048 float32 matrices and
their product's checksum from the start, and checks each step that the
product is bit-identical.  Prints "step K ok ..." (flushed), or
"CORRUPT step K ..." and exits 2.  The step counter lives in host memory and
the data in VRAM: after a restore, the next line must be "step K+1 ok".
"""
import os
import sys
import time

import torch


def main() -> int:
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    dev = torch.device("cuda", 0)
    n = int(gib * (1 << 30)) // 8
    x = torch.arange(n, dtype=torch.int64, device=dev)
    base = n * (n - 1) // 2
    g = torch.Generator(device=dev)
    g.manual_seed(1234)
    a = torch.rand((2048, 2048), generator=g, device=dev)
    b = torch.rand((2048, 2048), generator=g, device=dev)
    ref = (a @ b).double().sum().item()
    idx = torch.tensor([0, 1, n // 3, n // 2, n - 1], device=dev)
    torch.cuda.synchronize()
    print(f"start pid {os.getpid()} gpu \"{torch.cuda.get_device_name(dev)}\" torch "
          f"{torch.__version__} elements {n} ({gib:.2f} GiB) t {time.time():.3f}", flush=True)
    k = 0
    while True:
        t0 = time.time()
        total = x.sum().item()
        spots = x[idx].tolist()
        prod = (a @ b).double().sum().item()
        want_spots = [int(i) + k for i in idx.tolist()]
        if total != base + k * n or spots != want_spots or prod != ref:
            print(f"CORRUPT step {k} sum {total} want {base + k * n} spots {spots} want "
                  f"{want_spots} matmul {prod!r} want {ref!r} t {time.time():.3f}", flush=True)
            return 2
        x += 1
        torch.cuda.synchronize()
        print(f"step {k} ok elements {n} matmul {prod:.6f} ms {(time.time() - t0) * 1e3:.1f} "
              f"t {time.time():.3f}", flush=True)
        k += 1
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
