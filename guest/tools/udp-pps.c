/* udp-pps: small-packet rate over a network interface (perf/net's UDP part). Static, so the
 * same binary runs in the guest (from the initramfs) and on the host (perf/net copies it from
 * the guest folder's tools/).
 *
 *   udp-pps send ADDR PORT SECONDS SIZE
 *       send SIZE-byte datagrams to ADDR:PORT as fast as sendto() takes them for SECONDS;
 *       prints "UDPPPS sent=N usec=T"
 *   udp-pps recv PORT IDLE_MS [FIRST_MS]
 *       count datagrams on PORT from the first until none came for IDLE_MS; prints
 *       "UDPPPS received=N usec=T" (T from the first datagram to the last), then exits;
 *       gives up with received=0 when none came within FIRST_MS (default: waits for ever)
 *
 * The receiver's count is the figure: what the sender's side pushed but the path dropped
 * (a full tap queue, a full RX ring) is not a packet delivered. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static int usage(void) {
  fprintf(stderr, "usage: udp-pps send ADDR PORT SECONDS SIZE | udp-pps recv PORT IDLE_MS [FIRST_MS]\n");
  return 2;
}

static int send_flood(const char *addr, int port, int seconds, int size) {
  if (size < 1 || size > 65507 || seconds < 1) return usage();
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, addr, &to.sin_addr) != 1) return usage();
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("udp-pps: socket");
    return 1;
  }
  char *payload = calloc(1, (size_t)size);
  if (!payload) return 1;
  uint64_t start = now_us(), end = start + (uint64_t)seconds * 1000000u, sent = 0, t = start;
  while (t < end) {
    /* Check the clock every 256 packets: a syscall per packet would be half the cost. */
    for (int i = 0; i < 256; i++) {
      if (sendto(fd, payload, (size_t)size, 0, (struct sockaddr *)&to, sizeof(to)) == size) {
        sent++;
      } else if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
        perror("udp-pps: sendto");
        return 1;
      }
    }
    t = now_us();
  }
  printf("UDPPPS sent=%llu usec=%llu\n", (unsigned long long)sent, (unsigned long long)(t - start));
  return 0;
}

static int receive_count(int port, int idle_ms, int first_ms) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  int big = 4 << 20;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0) {
    perror("udp-pps: bind");
    return 1;
  }
  printf("UDPPPS listening port=%d\n", port);
  fflush(stdout);
  char buf[65536];
  uint64_t received = 0, first = 0, last = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    /* Before the first datagram, wait longer: the sender starts later. */
    int ready = poll(&p, 1, received ? idle_ms : first_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    /* Drain what is queued without polling between datagrams. */
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0) {
      last = now_us();
      if (received++ == 0) first = last;
    }
  }
  printf("UDPPPS received=%llu usec=%llu\n", (unsigned long long)received, (unsigned long long)(last - first));
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "send") == 0) {
    return send_flood(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  }
  if ((argc == 4 || argc == 5) && strcmp(argv[1], "recv") == 0) {
    return receive_count(atoi(argv[2]), atoi(argv[3]), argc == 5 ? atoi(argv[4]) : -1);
  }
  return usage();
}
