/* blk-bench: the guest side of perf/io's block figures (the guest has no fio).
 *
 *   blk-bench DEVICE TEST SECONDS [DEPTH]
 *     TEST seqread | seqwrite   1 MiB requests, one at a time, in order, wrapping at the end
 *          randread | randwrite 4 KiB requests at random 4 KiB-aligned offsets, DEPTH at once
 *   prints one line:  BLKBENCH test=TEST depth=D ops=N bytes=B usec=T
 *
 * Every request is O_DIRECT, so the guest's page cache does not answer for the device. A
 * depth of D is D processes each with one request outstanding (the guest kernel has no AIO
 * nor io_uring): the device sees D requests in flight, as fio with numjobs=D would show it.
 * Workers stop issuing at the deadline; the time is from the start to the last worker's end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BLOCK (1u << 20)
#define RAND_BLOCK 4096u
#define MAX_DEPTH 256

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int fail(const char* what, const char* detail) {
  fprintf(stderr, "blk-bench: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "", strerror(errno));
  return 1;
}

/* One worker: requests until the deadline; returns how many completed, or -1. */
static long run_worker(int fd, uint64_t device_bytes, int sequential, int writing, uint64_t deadline,
                       uint64_t seed) {
  size_t block = sequential ? SEQ_BLOCK : RAND_BLOCK;
  void* buf;
  if (posix_memalign(&buf, 4096, block) != 0) return -1;
  memset(buf, 0x5a, block);
  uint64_t blocks = device_bytes / block, next = 0, x = seed | 1;
  long done = 0;
  while (now_us() < deadline) {
    uint64_t index;
    if (sequential) {
      index = next;
      next = (next + 1) % blocks;
    } else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  /* xorshift64 */
      index = x % blocks;
    }
    off_t at = (off_t)(index * block);
    ssize_t n = writing ? pwrite(fd, buf, block, at) : pread(fd, buf, block, at);
    if (n != (ssize_t)block) {
      fprintf(stderr, "blk-bench: %s of %zu bytes at %lld: %s\n", writing ? "write" : "read", block,
              (long long)at, n < 0 ? strerror(errno) : "short transfer");
      free(buf);
      return -1;
    }
    done++;
  }
  free(buf);
  return done;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: blk-bench DEVICE seqread|seqwrite|randread|randwrite SECONDS [DEPTH]\n");
    return 2;
  }
  const char* test = argv[2];
  int sequential = strncmp(test, "seq", 3) == 0;
  int writing = strcmp(test + (sequential ? 3 : 4), "write") == 0;
  if (strcmp(test, "seqread") && strcmp(test, "seqwrite") && strcmp(test, "randread") && strcmp(test, "randwrite")) {
    fprintf(stderr, "blk-bench: unknown test '%s'\n", test);
    return 2;
  }
  long seconds = strtol(argv[3], NULL, 10);
  long depth = argc == 5 ? strtol(argv[4], NULL, 10) : 1;
  if (seconds < 1 || seconds > 3600 || depth < 1 || depth > MAX_DEPTH || (sequential && depth != 1)) {
    fprintf(stderr, "blk-bench: SECONDS must be 1-3600 and DEPTH 1-%d (1 for sequential tests)\n", MAX_DEPTH);
    return 2;
  }
  int fd = open(argv[1], (writing ? O_RDWR : O_RDONLY) | O_DIRECT);
  if (fd < 0) return fail("open", argv[1]);
  uint64_t device_bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &device_bytes) != 0) return fail("BLKGETSIZE64", argv[1]);
  if (device_bytes < SEQ_BLOCK) {
    fprintf(stderr, "blk-bench: %s holds %llu bytes, less than one 1 MiB request\n", argv[1],
            (unsigned long long)device_bytes);
    return 1;
  }

  int pipes[2];
  if (pipe(pipes) != 0) return fail("pipe", NULL);
  uint64_t start = now_us(), deadline = start + (uint64_t)seconds * 1000000u;
  for (long i = 0; i < depth; i++) {
    pid_t pid = fork();
    if (pid < 0) return fail("fork", NULL);
    if (pid == 0) {
      long done = run_worker(fd, device_bytes, sequential, writing, deadline, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
      (void)!write(pipes[1], &done, sizeof done);
      _exit(done < 0);
    }
  }
  close(pipes[1]);
  long total = 0, done, reports = 0;
  int failed = 0, status;
  while (read(pipes[0], &done, sizeof done) == (ssize_t)sizeof done) {
    reports++;
    if (done < 0) failed = 1;
    else total += done;
  }
  while (wait(&status) > 0) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  uint64_t elapsed = now_us() - start;
  if (failed || reports != depth) {
    fprintf(stderr, "blk-bench: a worker failed (%ld of %ld reported)\n", reports, depth);
    return 1;
  }
  uint64_t block = sequential ? SEQ_BLOCK : RAND_BLOCK;
  printf("BLKBENCH test=%s depth=%ld ops=%ld bytes=%llu usec=%llu\n", test, depth, total,
         (unsigned long long)(total * block), (unsigned long long)elapsed);
  return 0;
}
