/* The wire format between ember-faas (host) and ember-faas-agent (guest) over vsock;
 * PROTOCOL.md describes it. Plain C so the static guest agent and the C++ daemon share
 * one encoder and one decoder. All integers are little-endian. */
#ifndef EMBER_FAAS_PROTOCOL_H
#define EMBER_FAAS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define FAAS_AGENT_PORT 52u
#define FAAS_REQUEST_MAGIC 0x31514645u  /* "EFQ1" */
#define FAAS_REPLY_MAGIC 0x31524645u    /* "EFR1" */
#define FAAS_NETWORK_MAGIC 0x314E4645u  /* "EFN1": a network request instead of an invocation */
#define FAAS_REQUEST_HEADER_BYTES 16u
#define FAAS_REPLY_HEADER_BYTES 24u
/* Bounds, each checked by the decoder before anything is allocated. */
#define FAAS_MAX_HANDLER_BYTES 4096u
#define FAAS_MAX_BODY_BYTES (8u << 20)
#define FAAS_MAX_OUTPUT_BYTES (1u << 20)
#define FAAS_MAX_TIMEOUT_MS 3600000u

/* handler_len 0 is a ping: the agent answers FAAS_PONG without running anything. */
struct faas_request {
  uint32_t timeout_ms;
  uint32_t handler_len;
  uint32_t body_len;
};

enum faas_outcome {
  FAAS_EXITED = 0,        /* status: the exit code */
  FAAS_SIGNALED = 1,      /* status: the signal number */
  FAAS_TIMED_OUT = 2,     /* killed at timeout_ms */
  FAAS_SPAWN_FAILED = 3,  /* status: errno */
  FAAS_BAD_REQUEST = 4,   /* the request header was refused; status: a faas_decode_error */
  FAAS_PONG = 5,
  FAAS_CONFIGURED = 6,    /* a network request's answer; status: 0 or the errno that failed */
};
#define FAAS_FLAG_TRUNCATED 1u /* the handler wrote more than FAAS_MAX_OUTPUT_BYTES */

struct faas_reply {
  uint32_t outcome;
  int32_t status;
  uint32_t flags;
  uint32_t run_us;   /* from fork to the handler's end (or its kill) */
  uint32_t output_len;
};

enum faas_decode_error {
  FAAS_DECODE_OK = 0,
  FAAS_DECODE_SHORT = 1,     /* fewer bytes than a header */
  FAAS_DECODE_MAGIC = 2,     /* not this protocol or version */
  FAAS_DECODE_TOO_LARGE = 3, /* a length or the timeout over its bound */
  FAAS_DECODE_INVALID = 4,   /* an outcome or flag this version does not know */
};

static inline void faas_put_words(uint8_t *out, const uint32_t *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t b = 0; b < 4; b++) out[4 * i + b] = (uint8_t)(w[i] >> (8 * b));
}
static inline void faas_get_words(const uint8_t *in, uint32_t *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    w[i] = (uint32_t)in[4 * i] | (uint32_t)in[4 * i + 1] << 8 | (uint32_t)in[4 * i + 2] << 16 |
           (uint32_t)in[4 * i + 3] << 24;
}

/* The checks every header gets: its length, then its magic; the words into w. */
static inline enum faas_decode_error faas_decode_words(const uint8_t *in, size_t len, uint32_t magic, uint32_t *w,
                                                       size_t n) {
  if (len < 4 * n) return FAAS_DECODE_SHORT;
  faas_get_words(in, w, n);
  return w[0] == magic ? FAAS_DECODE_OK : FAAS_DECODE_MAGIC;
}

static inline void faas_encode_request(const struct faas_request *r, uint8_t out[FAAS_REQUEST_HEADER_BYTES]) {
  const uint32_t w[4] = {FAAS_REQUEST_MAGIC, r->timeout_ms, r->handler_len, r->body_len};
  faas_put_words(out, w, 4);
}

static inline enum faas_decode_error faas_decode_request(const uint8_t *in, size_t len, struct faas_request *r) {
  uint32_t w[4];
  enum faas_decode_error e = faas_decode_words(in, len, FAAS_REQUEST_MAGIC, w, 4);
  if (e != FAAS_DECODE_OK) return e;
  struct faas_request decoded = {w[1], w[2], w[3]};
  *r = decoded;
  if (r->timeout_ms > FAAS_MAX_TIMEOUT_MS || r->handler_len > FAAS_MAX_HANDLER_BYTES ||
      r->body_len > FAAS_MAX_BODY_BYTES)
    return FAAS_DECODE_TOO_LARGE;
  return FAAS_DECODE_OK;
}

static inline void faas_encode_reply(const struct faas_reply *r, uint8_t out[FAAS_REPLY_HEADER_BYTES]) {
  const uint32_t w[6] = {FAAS_REPLY_MAGIC, r->outcome, (uint32_t)r->status, r->flags, r->run_us, r->output_len};
  faas_put_words(out, w, 6);
}

static inline enum faas_decode_error faas_decode_reply(const uint8_t *in, size_t len, struct faas_reply *r) {
  uint32_t w[6];
  enum faas_decode_error e = faas_decode_words(in, len, FAAS_REPLY_MAGIC, w, 6);
  if (e != FAAS_DECODE_OK) return e;
  struct faas_reply decoded = {w[1], (int32_t)w[2], w[3], w[4], w[5]};
  *r = decoded;
  if (r->output_len > FAAS_MAX_OUTPUT_BYTES) return FAAS_DECODE_TOO_LARGE;
  if (r->outcome > FAAS_CONFIGURED || (r->flags & ~FAAS_FLAG_TRUNCATED)) return FAAS_DECODE_INVALID;
  return FAAS_DECODE_OK;
}

/* A network request (16 bytes, the same size as a request header, told apart by its magic):
 * the guest's eth0 gets `address`/`prefix_len` and a default route via `gateway` (IPv4
 * addresses as numbers, 10.0.0.1 = 0x0a000001), replacing what it had: a VM restored from a
 * snapshot answers with its own address, not its source's. */
struct faas_network {
  uint32_t address;
  uint32_t prefix_len;
  uint32_t gateway;
};

static inline void faas_encode_network(const struct faas_network *n, uint8_t out[FAAS_REQUEST_HEADER_BYTES]) {
  const uint32_t w[4] = {FAAS_NETWORK_MAGIC, n->address, n->prefix_len, n->gateway};
  faas_put_words(out, w, 4);
}

/* The gateway must be another address of the address's subnet (prefix 8 to 30). */
static inline enum faas_decode_error faas_decode_network(const uint8_t *in, size_t len, struct faas_network *n) {
  uint32_t w[4];
  enum faas_decode_error e = faas_decode_words(in, len, FAAS_NETWORK_MAGIC, w, 4);
  if (e != FAAS_DECODE_OK) return e;
  struct faas_network decoded = {w[1], w[2], w[3]};
  *n = decoded;
  if (n->prefix_len < 8 || n->prefix_len > 30) return FAAS_DECODE_INVALID;
  uint32_t mask = ~0u << (32 - n->prefix_len);
  uint32_t host = n->address & ~mask, gw_host = n->gateway & ~mask;
  if ((n->address & mask) != (n->gateway & mask) || n->address == n->gateway || host == 0 || host == ~mask ||
      gw_host == 0 || gw_host == ~mask)
    return FAAS_DECODE_INVALID;
  return FAAS_DECODE_OK;
}

#endif
