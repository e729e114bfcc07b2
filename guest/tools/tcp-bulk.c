/* tcp-bulk: a bulk TCP transfer in writes of a chosen size (perf/net's TCP part, beside busybox
 * nc, which writes 1 KiB at a time). Static, so the same binary runs in the guest (from the
 * initramfs) and on the host (perf/net copies it from the guest folder's tools/).
 *
 *   tcp-bulk send ADDR PORT BYTES CHUNK
 *       connect, write BYTES in writes of CHUNK bytes, shut down the sending side and wait
 *       until the receiver closes (it has read everything); prints "TCPBULK sent=N"
 *   tcp-bulk get ADDR PORT
 *       connect and read until the sender closes; prints "TCPBULK received=N"
 *   tcp-bulk serve PORT BYTES CHUNK
 *       for every connection on PORT in turn: write BYTES in writes of CHUNK bytes, close
 *   tcp-bulk sink PORT
 *       accept one connection on PORT, read until the sender shuts down, close; prints
 *       "TCPBULK received=N"
 *
 * Whoever times a transfer (perf/net: the guest, around send and get) counts from the
 * connection to the receiver's last byte: send returns once the receiver closed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMaxChunk = 1 << 20, kReadSize = 1 << 16 };

static int usage(void) {
  fprintf(stderr,
          "usage: tcp-bulk send ADDR PORT BYTES CHUNK | tcp-bulk get ADDR PORT | tcp-bulk serve PORT BYTES CHUNK |"
          " tcp-bulk sink PORT\n");
  return 2;
}

static int parse_port(const char *text) {
  char *end;
  long port = strtol(text, &end, 10);
  return *end == 0 && port > 0 && port < 65536 ? (int)port : -1;
}

static long long parse_count(const char *text, long long max) {
  char *end;
  long long n = strtoll(text, &end, 10);
  return *end == 0 && n > 0 && n <= max ? n : -1;
}

static int connect_to(const char *addr, int port) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, addr, &to.sin_addr) != 1) {
    fprintf(stderr, "tcp-bulk: not an IPv4 address: %s\n", addr);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
    fprintf(stderr, "tcp-bulk: connect to %s:%d: %s\n", addr, port, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

static int listen_on(int port) {
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 || listen(fd, 4) != 0) {
    fprintf(stderr, "tcp-bulk: listen on port %d: %s\n", port, strerror(errno));
    return -1;
  }
  return fd;
}

/* Writes `bytes` in writes of `chunk`; 0, or -1 with errno when the connection failed. */
static int write_all(int fd, long long bytes, long long chunk) {
  static char zeros[kMaxChunk];
  while (bytes > 0) {
    size_t want = (size_t)(bytes < chunk ? bytes : chunk), done = 0;
    while (done < want) {
      ssize_t n = write(fd, zeros + done, want - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      done += (size_t)n;
    }
    bytes -= (long long)want;
  }
  return 0;
}

/* Bytes read until the peer shut down its side, or -1 when the connection failed. */
static long long read_all(int fd) {
  static char buf[kReadSize];
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) return total;
    total += n;
  }
}

static int send_bulk(const char *addr, int port, long long bytes, long long chunk) {
  int fd = connect_to(addr, port);
  if (fd < 0) return 1;
  if (write_all(fd, bytes, chunk) != 0 || shutdown(fd, SHUT_WR) != 0) {
    fprintf(stderr, "tcp-bulk: sending: %s\n", strerror(errno));
    return 1;
  }
  read_all(fd);  /* the receiver's close: it has everything */
  close(fd);
  printf("TCPBULK sent=%lld\n", bytes);
  return 0;
}

static int get_bulk(const char *addr, int port) {
  int fd = connect_to(addr, port);
  if (fd < 0) return 1;
  long long got = read_all(fd);
  close(fd);
  if (got < 0) {
    fprintf(stderr, "tcp-bulk: receiving: %s\n", strerror(errno));
    return 1;
  }
  printf("TCPBULK received=%lld\n", got);
  return 0;
}

static int serve(int port, long long bytes, long long chunk) {
  int listener = listen_on(port);
  if (listener < 0) return 1;
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("tcp-bulk: accept");
      return 1;
    }
    /* A receiver that went away mid-transfer ends only its own connection. */
    if (write_all(fd, bytes, chunk) != 0) fprintf(stderr, "tcp-bulk: serving: %s\n", strerror(errno));
    close(fd);
  }
}

static int sink(int port) {
  int listener = listen_on(port);
  if (listener < 0) return 1;
  int fd;
  do fd = accept(listener, NULL, NULL);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    perror("tcp-bulk: accept");
    return 1;
  }
  long long got = read_all(fd);
  close(fd);
  printf("TCPBULK received=%lld\n", got < 0 ? 0 : got);
  return got < 0;
}

int main(int argc, char **argv) {
  const long long kMaxBytes = 1LL << 40;
  if (argc == 6 && strcmp(argv[1], "send") == 0) {
    int port = parse_port(argv[3]);
    long long bytes = parse_count(argv[4], kMaxBytes), chunk = parse_count(argv[5], kMaxChunk);
    if (port < 0 || bytes < 0 || chunk < 0) return usage();
    return send_bulk(argv[2], port, bytes, chunk);
  }
  if (argc == 4 && strcmp(argv[1], "get") == 0) {
    int port = parse_port(argv[3]);
    return port < 0 ? usage() : get_bulk(argv[2], port);
  }
  if (argc == 5 && strcmp(argv[1], "serve") == 0) {
    int port = parse_port(argv[2]);
    long long bytes = parse_count(argv[3], kMaxBytes), chunk = parse_count(argv[4], kMaxChunk);
    if (port < 0 || bytes < 0 || chunk < 0) return usage();
    return serve(port, bytes, chunk);
  }
  if (argc == 3 && strcmp(argv[1], "sink") == 0) {
    int port = parse_port(argv[2]);
    return port < 0 ? usage() : sink(port);
  }
  return usage();
}
