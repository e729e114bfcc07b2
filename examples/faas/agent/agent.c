/* ember-faas-agent: the guest side of ember-faas (PROTOCOL.md). Listens on vsock port
 * FAAS_AGENT_PORT (or argv[1]) and serves one connection at a time: reads one request,
 * runs `/bin/sh -c HANDLER` with the body on stdin, answers with the outcome and stdout
 * (at most FAAS_MAX_OUTPUT_BYTES kept; the rest is read and dropped, and flagged), then
 * closes. A handler past its timeout is killed with its whole process group. A function with a
 * code drive finds it as $FAAS_CODE (a block device), read afresh for every invocation.
 * Static, no allocation beyond the body, handler and output buffers, all bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/fs.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

#define HEADER_WAIT_MS 10000 /* a host that connects and sends nothing is dropped after this */

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* Reads exactly n bytes within wait_ms; 0 on success. */
static int read_full(int fd, void *buf, size_t n, int wait_ms) {
  uint64_t deadline = now_us() + (uint64_t)wait_ms * 1000u;
  size_t got = 0;
  while (got < n) {
    uint64_t t = now_us();
    if (t >= deadline) return -1;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)((deadline - t) / 1000u) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t k = read(fd, (char *)buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    got += (size_t)k;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = write(fd, (const char *)buf + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    done += (size_t)k;
  }
  return 0;
}

static void send_reply(int conn, struct faas_reply *r, const char *out) {
  uint8_t h[FAAS_REPLY_HEADER_BYTES];
  faas_encode_reply(r, h);
  if (write_full(conn, h, sizeof h) == 0 && r->output_len) write_full(conn, out, r->output_len);
}

struct run {
  pid_t pid;
  int in, out;          /* our ends of the handler's stdin and stdout, non-blocking */
  const char *body;
  size_t body_len, body_sent;
  char *output;
  size_t output_len;
  int truncated;
};

/* The function's code drive, the virtio-blk device whose serial (ember's drive id) is "code":
 * "/dev/vdX" in `path`, or "" without one. Its buffered blocks are dropped (BLKFLSBUF) so the
 * handler reads the file the host swapped in last (PUT /functions/NAME/code), not what the
 * snapshot's page cache held. */
static void find_code_drive(char *path, size_t size) {
  path[0] = 0;
  DIR *d = opendir("/sys/block");
  if (!d) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) > 16) continue;
    char serial_path[64], serial[32] = {0};
    snprintf(serial_path, sizeof serial_path, "/sys/block/%s/serial", e->d_name);
    int f = open(serial_path, O_RDONLY | O_CLOEXEC);
    if (f < 0) continue;
    ssize_t n = read(f, serial, sizeof serial - 1);
    close(f);
    if (n < 4 || strncmp(serial, "code", 4) != 0 || (n > 4 && serial[4] != '\n' && serial[4] != 0)) continue;
    snprintf(path, size, "/dev/%s", e->d_name);
    int dev = open(path, O_RDONLY | O_CLOEXEC);
    if (dev >= 0) {
      ioctl(dev, BLKFLSBUF, 0);
      close(dev);
    }
    break;
  }
  closedir(d);
}

static pid_t spawn(const char *handler, int *in, int *out) {
  char code[32];
  find_code_drive(code, sizeof code);
  int pin[2], pout[2];
  if (pipe2(pin, O_CLOEXEC) < 0) return -1;
  if (pipe2(pout, O_CLOEXEC) < 0) {
    close(pin[0]); close(pin[1]);
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    signal(SIGPIPE, SIG_DFL);
    if (code[0]) setenv("FAAS_CODE", code, 1);
    execl("/bin/sh", "sh", "-c", handler, (char *)NULL);
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  if (pid < 0) {
    close(pin[1]); close(pout[0]);
    return -1;
  }
  fcntl(pin[1], F_SETFL, O_NONBLOCK);
  fcntl(pout[0], F_SETFL, O_NONBLOCK);
  *in = pin[1];
  *out = pout[0];
  return pid;
}

/* Moves body bytes in and output bytes out until stdout closes and the handler exits, or the
 * deadline passes. Returns 1 when the handler was reaped (status in *wstatus), 0 at the deadline. */
static int pump(struct run *r, uint64_t deadline, int *wstatus) {
  char drop[4096];
  for (;;) {
    if (r->out < 0) {
      pid_t w = waitpid(r->pid, wstatus, WNOHANG);
      if (w == r->pid) return 1;
    }
    uint64_t t = now_us();
    if (t >= deadline) return 0;
    struct pollfd p[2];
    int n = 0;
    if (r->out >= 0) p[n++] = (struct pollfd){r->out, POLLIN, 0};
    if (r->in >= 0) p[n++] = (struct pollfd){r->in, POLLOUT, 0};
    int wait_ms = (int)((deadline - t) / 1000u) + 1;
    if (r->out < 0 && wait_ms > 5) wait_ms = 5; /* stdout closed: poll for the exit */
    if (poll(p, (nfds_t)n, wait_ms) < 0 && errno != EINTR) return 0;
    for (int i = 0; i < n; i++) {
      if (!p[i].revents) continue;
      if (p[i].fd == r->out) {
        size_t room = FAAS_MAX_OUTPUT_BYTES - r->output_len;
        char *dst = room ? r->output + r->output_len : drop;
        ssize_t k = read(r->out, dst, room ? room : sizeof drop);
        if (k > 0 && room) r->output_len += (size_t)k;
        else if (k > 0) r->truncated = 1;
        else if (k == 0 || errno != EAGAIN) { close(r->out); r->out = -1; }
      } else {
        ssize_t k = write(r->in, r->body + r->body_sent, r->body_len - r->body_sent);
        if (k > 0) r->body_sent += (size_t)k;
        if ((k < 0 && errno != EAGAIN) || r->body_sent == r->body_len) { close(r->in); r->in = -1; }
      }
    }
  }
}

static void run_handler(int conn, const struct faas_request *q, const char *handler, const char *body,
                        char *output) {
  struct faas_reply reply = {0};
  struct run r = {.body = body, .body_len = q->body_len, .output = output, .in = -1, .out = -1};
  uint64_t start = now_us();
  r.pid = spawn(handler, &r.in, &r.out);
  if (r.pid < 0) {
    reply.outcome = FAAS_SPAWN_FAILED;
    reply.status = errno;
    send_reply(conn, &reply, NULL);
    return;
  }
  if (r.body_len == 0) { close(r.in); r.in = -1; }
  int wstatus = 0;
  if (pump(&r, start + (uint64_t)q->timeout_ms * 1000u, &wstatus)) {
    reply.outcome = WIFEXITED(wstatus) ? FAAS_EXITED : FAAS_SIGNALED;
    reply.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus);
  } else {
    kill(-r.pid, SIGKILL);
    kill(r.pid, SIGKILL);
    waitpid(r.pid, &wstatus, 0);
    reply.outcome = FAAS_TIMED_OUT;
  }
  if (r.in >= 0) close(r.in);
  if (r.out >= 0) close(r.out);
  while (waitpid(-1, NULL, WNOHANG) > 0) {} /* grandchildren the handler left behind */
  reply.run_us = (uint32_t)(now_us() - start);
  reply.flags = r.truncated ? FAAS_FLAG_TRUNCATED : 0;
  reply.output_len = (uint32_t)r.output_len;
  send_reply(conn, &reply, output);
}

static struct sockaddr inet_address(uint32_t address) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(address)};
  struct sockaddr out;
  memcpy(&out, &a, sizeof a);
  return out;
}

/* eth0 gets the request's address and default route (the old default route goes first: a VM
 * restored from a snapshot still has its source's). 0 or the errno of the step that failed. */
static int configure_network(const struct faas_network *n) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
  int err = 0;
  ifr.ifr_addr = inet_address(n->address);
  if (ioctl(s, SIOCSIFADDR, &ifr) < 0) err = errno;
  ifr.ifr_netmask = inet_address(~0u << (32 - n->prefix_len));
  if (!err && ioctl(s, SIOCSIFNETMASK, &ifr) < 0) err = errno;
  if (!err && ioctl(s, SIOCGIFFLAGS, &ifr) < 0) err = errno;
  ifr.ifr_flags |= IFF_UP;
  if (!err && ioctl(s, SIOCSIFFLAGS, &ifr) < 0) err = errno;
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  rt.rt_dst = inet_address(0);
  rt.rt_genmask = inet_address(0);
  if (!err) while (ioctl(s, SIOCDELRT, &rt) == 0) {} /* every old default route */
  rt.rt_gateway = inet_address(n->gateway);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  if (!err && ioctl(s, SIOCADDRT, &rt) < 0) err = errno;
  close(s);
  return err;
}

static void serve(int conn, char *output) {
  uint8_t h[FAAS_REQUEST_HEADER_BYTES];
  struct faas_request q;
  struct faas_reply reply = {0};
  if (read_full(conn, h, sizeof h, HEADER_WAIT_MS) < 0) return;
  uint32_t magic;
  faas_get_words(h, &magic, 1);
  if (magic == FAAS_NETWORK_MAGIC) {
    struct faas_network n;
    enum faas_decode_error ne = faas_decode_network(h, sizeof h, &n);
    reply.outcome = ne == FAAS_DECODE_OK ? FAAS_CONFIGURED : FAAS_BAD_REQUEST;
    reply.status = ne == FAAS_DECODE_OK ? configure_network(&n) : (int32_t)ne;
    send_reply(conn, &reply, NULL);
    return;
  }
  enum faas_decode_error e = faas_decode_request(h, sizeof h, &q);
  if (e != FAAS_DECODE_OK) {
    reply.outcome = FAAS_BAD_REQUEST;
    reply.status = e;
    send_reply(conn, &reply, NULL);
    return;
  }
  if (q.handler_len == 0) {
    reply.outcome = FAAS_PONG;
    send_reply(conn, &reply, NULL);
    return;
  }
  char *handler = malloc(q.handler_len + 1);
  char *body = malloc(q.body_len ? q.body_len : 1);
  if (handler && body && read_full(conn, handler, q.handler_len, HEADER_WAIT_MS) == 0 &&
      read_full(conn, body, q.body_len, HEADER_WAIT_MS) == 0) {
    handler[q.handler_len] = 0;
    run_handler(conn, &q, handler, body, output);
  }
  free(handler);
  free(body);
}

int main(int argc, char **argv) {
  unsigned port = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : FAAS_AGENT_PORT;
  signal(SIGPIPE, SIG_IGN);
  static char output[FAAS_MAX_OUTPUT_BYTES];
  int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0) {
    fprintf(stderr, "ember-faas-agent: vsock port %u: %s\n", port, strerror(errno));
    return 1;
  }
  printf("EMBER_FAAS_AGENT_READY port=%u\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EINTR) usleep(10000);
      continue;
    }
    serve(c, output);
    close(c);
  }
}
