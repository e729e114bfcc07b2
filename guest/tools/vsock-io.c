/* vsock-io: the guest side of ember's vsock tests (busybox has no AF_VSOCK).
 *
 *   vsock-io listen PORT echo         accept forever; echo each connection (fork)
 *   vsock-io listen PORT once         accept one connection, read it to EOF, exit
 *   vsock-io listen PORT receive N    accept N connections one after the other, read each to
 *       EOF and print its bytes and MiB/s (timed from accept to EOF; no checksum: the
 *       measurement is of the transport, not of this loop)
 *   vsock-io connect CID PORT echo BYTES SEED
 *       send BYTES of the SEED stream while reading the echo; verify it byte by
 *       byte; exit 0 only if all BYTES came back intact before EOF
 *   vsock-io connect CID PORT send BYTES SEED
 *       send BYTES, half-close, wait for the peer's EOF; prints MiB/s
 *
 * The data stream is xorshift64 words from SEED; the checksum is FNV-1a over
 * 64-bit words: both cheap on a slow emulated host, and mirrored by the host
 * side of the tests (tests/e2e/vsock_test.cpp). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

struct stream {
  uint64_t state;
  uint64_t word;
  unsigned used; /* bytes of `word` handed out */
};

static void stream_init(struct stream *s, uint64_t seed) {
  s->state = seed * 0x9e3779b97f4a7c15ull + 1;
  s->used = 8;
}

static void stream_fill(struct stream *s, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s->used == 8) {
      uint64_t x = s->state;
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      s->state = x;
      s->word = x;
      s->used = 0;
    }
    out[i] = (unsigned char)(s->word >> (8 * s->used++));
  }
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int die(const char *what) {
  fprintf(stderr, "vsock-io: %s: %s\n", what, strerror(errno));
  return 1;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void echo(int fd) {
  static unsigned char buf[CHUNK];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || write_all(fd, buf, (size_t)n) < 0) break;
  }
  shutdown(fd, SHUT_WR);
}

static int listen_on(unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0) return -1;
  return fd;
}

static int cmd_listen(unsigned port, const char *mode) {
  int fd = listen_on(port);
  if (fd < 0) return die("listen");
  signal(SIGCHLD, SIG_IGN);
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      return die("accept");
    }
    if (strcmp(mode, "once") == 0) {
      unsigned char buf[4096];
      while (read(c, buf, sizeof buf) > 0) {
      }
      close(c);
      return 0;
    }
    if (fork() == 0) {
      close(fd);
      echo(c);
      _exit(0);
    }
    close(c);
  }
}

static int cmd_receive(unsigned port, unsigned count) {
  static unsigned char buf[CHUNK];
  int fd = listen_on(port);
  if (fd < 0) return die("listen");
  for (unsigned i = 0; i < count;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      return die("accept");
    }
    double start = now();
    uint64_t got = 0;
    for (;;) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return die("read");
      if (n == 0) break;
      got += (uint64_t)n;
    }
    double secs = now() - start;
    close(c);
    printf("vsock-io: received %llu bytes in %.3f s: %.2f MiB/s\n", (unsigned long long)got, secs,
           got / secs / 1048576.0);
    i++;
  }
  return 0;
}

static int connect_to(unsigned cid, unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  return fd;
}

/* Sends `total` bytes and, with `verify`, checks the echo as it arrives. */
static int transfer(int fd, uint64_t total, uint64_t seed, int verify) {
  static unsigned char out[CHUNK], in[CHUNK], want[CHUNK];
  struct stream tx, rx;
  stream_init(&tx, seed);
  stream_init(&rx, seed);
  uint64_t sent = 0, got = 0, sum = 0xcbf29ce484222325ull;
  size_t out_len = 0, out_off = 0;
  int write_open = 1;
  double start = now();
  for (;;) {
    if (write_open && sent == total) {
      shutdown(fd, SHUT_WR);
      write_open = 0;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN | (write_open ? POLLOUT : 0)};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      return die("poll");
    }
    if (write_open && (p.revents & POLLOUT)) {
      if (out_off == out_len) {
        out_len = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
        stream_fill(&tx, out, out_len);
        sum = fnv(sum, out, out_len);
        out_off = 0;
      }
      ssize_t w = send(fd, out + out_off, out_len - out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) return die("send");
      if (w > 0) out_off += (size_t)w, sent += (uint64_t)w;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(fd, in, sizeof in, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return die("recv");
      if (n == 0) break;
      if (!verify) continue;
      if (got + (uint64_t)n > total) {
        fprintf(stderr, "vsock-io: %llu bytes echoed, more than sent\n", (unsigned long long)(got + n));
        return 1;
      }
      stream_fill(&rx, want, (size_t)n);
      if (memcmp(in, want, (size_t)n) != 0) {
        fprintf(stderr, "vsock-io: echo differs within bytes %llu..%llu\n", (unsigned long long)got,
                (unsigned long long)(got + n));
        return 1;
      }
      got += (uint64_t)n;
    }
  }
  double secs = now() - start;
  if (sent != total || (verify && got != total)) {
    fprintf(stderr, "vsock-io: EOF after %llu of %llu bytes sent, %llu echoed\n", (unsigned long long)sent,
            (unsigned long long)total, (unsigned long long)got);
    return 1;
  }
  printf("vsock-io: %s %llu bytes checksum %016llx in %.3f s: %.2f MiB/s\n", verify ? "echoed" : "sent",
         (unsigned long long)total, (unsigned long long)sum, secs, total / secs / 1048576.0);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && strcmp(argv[1], "listen") == 0) return cmd_listen((unsigned)strtoul(argv[2], 0, 10), argv[3]);
  if (argc == 5 && strcmp(argv[1], "listen") == 0 && strcmp(argv[3], "receive") == 0)
    return cmd_receive((unsigned)strtoul(argv[2], 0, 10), (unsigned)strtoul(argv[4], 0, 10));
  if (argc == 7 && strcmp(argv[1], "connect") == 0) {
    int fd = connect_to((unsigned)strtoul(argv[2], 0, 10), (unsigned)strtoul(argv[3], 0, 10));
    if (fd < 0) return die("connect");
    int verify = strcmp(argv[4], "echo") == 0;
    if (!verify && strcmp(argv[4], "send") != 0) goto usage;
    return transfer(fd, strtoull(argv[5], 0, 10), strtoull(argv[6], 0, 10), verify);
  }
usage:
  fprintf(stderr,
          "usage: vsock-io listen PORT echo|once\n"
          "       vsock-io listen PORT receive COUNT\n"
          "       vsock-io connect CID PORT echo|send BYTES SEED\n");
  return 2;
}
