// vram_check: a CUDA workload whose VRAM content is checked word by word on
// every iteration, to prove that a checkpoint/restore kept every byte.
//
//   vram_check [GIB] [INTERVAL_MS] [TAG]   (defaults: 1 GiB, 200 ms, no tag)
//
// Allocates GIB GiB with cudaMalloc (device memory, not managed memory), fills
// it with a pattern that depends on each word's index, then loops: iteration K
// checks that every word equals pattern(i) + K and bumps it to
// pattern(i) + K + 1, all on the GPU; the host reads back the error count.
// Prints "iter K ok" (flushed) per iteration, or "CORRUPT iter K ..." and exits 2;
// with a TAG every line ends in " tag TAG" (several processes, one log).
// The host-side iteration counter and the device buffer move through a
// checkpoint together, so a restored process must go on with "iter K+1 ok".
//
// Build (on the GPU machine): nvcc -O2 -cudart static -o vram_check vram_check.cu
// The binary then needs only glibc and the driver's libcuda.so.1.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__host__ __device__ static inline uint64_t pattern(uint64_t i) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return x ^ 0xD1B54A32D192ED03ull;
}

__global__ void fill(uint64_t *w, uint64_t n) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
       i += (uint64_t)gridDim.x * blockDim.x)
    w[i] = pattern(i);
}

__global__ void check_bump(uint64_t *w, uint64_t n, uint64_t k,
                           unsigned long long *errors,
                           unsigned long long *first_bad) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
       i += (uint64_t)gridDim.x * blockDim.x) {
    uint64_t want = pattern(i) + k;
    uint64_t have = w[i];
    if (have != want) {
      if (atomicAdd(errors, 1ull) == 0) *first_bad = i;
      w[i] = want + 1;  // resynchronise so one bad word is counted once
    } else {
      w[i] = have + 1;
    }
  }
}

#define CK(call)                                                           \
  do {                                                                     \
    cudaError_t e_ = (call);                                               \
    if (e_ != cudaSuccess) {                                               \
      printf("CUDA_ERROR %s at %s:%d: %s\n", #call, __FILE__, __LINE__,   \
             cudaGetErrorString(e_));                                      \
      fflush(stdout);                                                      \
      exit(3);                                                             \
    }                                                                      \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double gib = argc > 1 ? atof(argv[1]) : 1.0;
  long interval_ms = argc > 2 ? atol(argv[2]) : 200;
  const char *tag = argc > 3 ? argv[3] : NULL;
  char suffix[64] = "";
  if (tag != NULL) snprintf(suffix, sizeof suffix, " tag %.40s", tag);
  uint64_t bytes = (uint64_t)(gib * 1024.0 * 1024.0 * 1024.0);
  uint64_t n = bytes / sizeof(uint64_t);
  setvbuf(stdout, NULL, _IOLBF, 0);

  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  uint64_t *w = NULL;
  unsigned long long *d_err = NULL, *d_first = NULL;
  CK(cudaMalloc((void **)&w, n * sizeof(uint64_t)));
  CK(cudaMalloc((void **)&d_err, sizeof(unsigned long long)));
  CK(cudaMalloc((void **)&d_first, sizeof(unsigned long long)));
  int blocks = prop.multiProcessorCount * 8, threads = 256;
  fill<<<blocks, threads>>>(w, n);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  printf("start pid %d gpu \"%s\" words %llu bytes %llu (%.2f GiB) t %.3f%s\n", (int)getpid(),
         prop.name, (unsigned long long)n, (unsigned long long)(n * 8), gib, now_s(), suffix);

  for (uint64_t k = 0;; k++) {
    unsigned long long errors = 0, first = 0;
    CK(cudaMemset(d_err, 0, sizeof errors));
    double t0 = now_s();
    check_bump<<<blocks, threads>>>(w, n, k, d_err, d_first);
    CK(cudaGetLastError());
    CK(cudaMemcpy(&errors, d_err, sizeof errors, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&first, d_first, sizeof first, cudaMemcpyDeviceToHost));
    double t1 = now_s();
    if (errors) {
      printf("CORRUPT iter %llu errors %llu of %llu words, first bad word %llu t %.3f%s\n",
             (unsigned long long)k, errors, (unsigned long long)n, first, t1, suffix);
      return 2;
    }
    printf("iter %llu ok words %llu kernel_ms %.1f t %.3f%s\n", (unsigned long long)k,
           (unsigned long long)n, (t1 - t0) * 1e3, t1, suffix);
    if (interval_ms > 0) usleep((useconds_t)interval_ms * 1000);
  }
}
